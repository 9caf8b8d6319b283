"""Memory and CPU per photo of the running bot: `python -m bot` (web chat only) as a subprocess.

    python bench/memory.py [--repo DIR] [--rounds 3] [--at-once 12] [--cpu-photos 40]

1. CPU per photo, one at a time: POST /api/analyse of a 1280x960 phone photo (JPEG q90) and of
   a 448x336 one (a dataset photo), alternately, in blocks; the bot's CPU time (utime + stime
   from /proc) over each block, divided by its photos. Both taken from the same source photo.
2. Memory under pixel-heavy photos: --at-once concurrent uploads of one kind, --rounds times,
   for each kind (a 40 MP baseline JPEG, the same progressive, a 40 MP RGB PNG and RGBA PNG, a
   30 MP palette GIF, a 10 MP WebP, then all kinds mixed); the bot's peak RSS (VmHWM) after each
   kind, against its RSS after start-up and a first photo. Every photo is allowed by the default
   limits (20 MB, 40 MP) and compresses to a few MB at most. Each answer's status is counted:
   a photo refused as too large to decode (422 too_many_pixels) is an answer, not a failure.

--repo runs another checkout's bot (e.g. the main branch's, for a before/after) with this same
load. The machine may be shared: CPU figures are per photo, from the bot's own CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DATASET = ROOT.parent / "shared/datasets/skin-photos"
SOURCE = "acne/dermnet-0121064acd137936.jpg"  # 448 x 336


def heavy_photos() -> dict[str, bytes]:
    """Pixel-heavy photos that compress well (an upscaled photo is smooth), each allowed."""
    source = Image.open(DATASET / SOURCE).convert("RGB")
    big = source.resize((7296, 5472), Image.Resampling.BICUBIC)  # 39.9 MP
    photos = {
        "jpeg 40 MP": encode(big, "JPEG", quality=85),
        "progressive jpeg 40 MP": encode(big, "JPEG", quality=85, progressive=True),
        "png 40 MP": encode(big, "PNG", compress_level=1),
        "rgba png 40 MP": encode(big.convert("RGBA"), "PNG", compress_level=1),
    }
    gif = source.resize((6400, 4800), Image.Resampling.BICUBIC).quantize(64)  # 30.7 MP
    photos["gif 30 MP"] = encode(gif, "GIF")
    webp = source.resize((3648, 2736), Image.Resampling.BICUBIC)  # 10 MP
    photos["webp 10 MP"] = encode(webp, "WEBP", quality=80)
    return photos


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM... in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Vm"):
            name, value = line.split(":", 1)
            values[name] = int(value.split()[0]) // 1024
    return values


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def analyse(session: aiohttp.ClientSession, url: str, data: bytes) -> str:
    async with session.post(url, data=data, headers={"Content-Type": "image/jpeg"}) as reply:
        body = await reply.json()
        return f"{reply.status} {body.get('error', 'ok')}"


async def cpu_per_photo(session, url, pid, photos: dict[str, bytes], count: int) -> dict:
    """ms of the bot's CPU per photo, one photo at a time, kinds alternating in blocks of 5."""
    spent = dict.fromkeys(photos, 0.0)
    for _ in range(max(1, count // 5)):
        for name, data in photos.items():
            before = cpu_seconds(pid)
            for _ in range(5):
                await analyse(session, url, data)
            spent[name] += cpu_seconds(pid) - before
    return {name: 1000 * seconds / (max(1, count // 5) * 5) for name, seconds in spent.items()}


async def run(args) -> int:
    heavy = heavy_photos()
    small = (DATASET / SOURCE).read_bytes()
    phone = encode(
        Image.open(DATASET / SOURCE).resize((1280, 960), Image.Resampling.BICUBIC),
        "JPEG",
        quality=90,
    )
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="skincare-memory-"))
    env = {
        **os.environ,
        "SKINCARE_DB": str(workdir / "memory.sqlite3"),
        "SKINCARE_WEB_PORT": str(port),
        "SKINCARE_LOG_LEVEL": "WARNING",
    }
    env.pop("TELEGRAM_BOT_TOKEN", None)
    log = (workdir / "bot.log").open("w")
    bot = subprocess.Popen(
        [sys.executable, "-m", "bot"], cwd=args.repo, env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}/api/analyse"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
            deadline = time.monotonic() + 120
            while True:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as reply:
                        if reply.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if bot.poll() is not None or time.monotonic() > deadline:
                    print(f"the bot did not start; its log: {workdir / 'bot.log'}")
                    return 1
                await asyncio.sleep(0.3)
            await analyse(session, url, small)  # the model warmed up and one photo served
            base = proc_status(bot.pid)["VmRSS"]
            print(f"bot from {args.repo}; RSS after start-up and a first photo: {base} MB")

            cpu = await cpu_per_photo(
                session,
                url,
                bot.pid,
                {"phone 1280x960": phone, "small 448x336": small},
                args.cpu_photos,
            )
            phone_ms, small_ms = cpu["phone 1280x960"], cpu["small 448x336"]
            print(
                f"CPU per photo, one at a time ({args.cpu_photos} each): phone 1280x960 "
                f"{phone_ms:.1f} ms, small 448x336 {small_ms:.1f} ms (x{phone_ms / small_ms:.2f})"
            )

            if args.kinds:
                heavy = {name: data for name, data in heavy.items() if name in args.kinds}
            kinds = [(name, [data]) for name, data in heavy.items()]
            if len(heavy) > 1:
                kinds.append(("all kinds mixed", list(heavy.values())))
            print(f"{args.at_once} photos at once, {args.rounds} rounds of each:")
            for name, choices in kinds:
                answers: Counter[str] = Counter()
                for _ in range(args.rounds):
                    batch = [choices[i % len(choices)] for i in range(args.at_once)]
                    answers.update(
                        await asyncio.gather(*(analyse(session, url, data) for data in batch))
                    )
                sizes = "/".join(f"{len(data) / 1e6:.1f}" for data in choices)
                peak = proc_status(bot.pid)["VmHWM"]
                print(
                    f"  {name:24s} {sizes:>26s} MB  peak RSS so far {peak:5d} MB  "
                    f"answers: {dict(answers)}"
                )
            print(f"peak RSS (VmHWM) {proc_status(bot.pid)['VmHWM']} MB; start {base} MB")
    finally:
        if bot.poll() is None:
            bot.send_signal(signal.SIGINT)
            try:
                bot.wait(20)
            except subprocess.TimeoutExpired:
                bot.kill()
        log.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT, help="the checkout whose bot runs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--at-once", type=int, default=12)
    parser.add_argument("--cpu-photos", type=int, default=40)
    parser.add_argument(
        "--kinds",
        nargs="*",
        help='only these kinds, e.g. "jpeg 40 MP" "png 40 MP" (the code before this bench took '
        "up to 760 MB per 40 MP RGBA PNG: mind the machine's memory)",
    )
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
