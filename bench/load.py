"""The whole bot under load: `python -m bot` against a local Telegram Bot API server.

    python bench/load.py [--users 16] [--seconds 30] [--text-seconds 10] [--inject-faults]
                         [--telegram-max-rate 0] [--profile OUT.prof]

Starts FakeTelegram (tests/telegram_server.py) in this process and the bot as a subprocess,
exactly as `make run` starts it, with TELEGRAM_BASE_URL pointed at FakeTelegram, a fresh SQLite
store and the bundled model. Then:

1. start-up: a /start and then a photo sent the moment the process is spawned: how long until
   each is answered (imports, model load and warm-up, store seeding, first getUpdates included);
2. mixed phase (--seconds): N users (half English, half Korean), each a closed loop like a person
   who reads the answer before typing again: a real photo from the shared dataset, then three
   follow-up questions, again and again. Photo->reply latency (update queued -> the reply's
   sendMessage reached Telegram), photos/s, text updates/s;
3. text phase (--text-seconds): the same users, follow-up questions only: text capacity.

Every update must get its reply: "lost" counts those still unanswered 30 s after they were
sent. The bot's peak RSS is its VmHWM from /proc; its CPU time comes from /proc as well.

--inject-faults, in the mixed phase: the SQLite store is locked by this process for 4 s from
t=8 s (the bot's store calls wait out the 5 s busy timeout or fail, and the conversation carries
on without the user's memory), and Telegram answers every call but getUpdates with 429
(retry_after 1) for 3 s from t=16 s. Reported: latency of the updates sent around the faults, and
that none was lost.

Telegram lets a bot send about 30 messages a second in all; the bot keeps to that with PTB's
AIORateLimiter (SKINCARE_TELEGRAM_MAX_RATE, default 30). This benchmark lifts it
(--telegram-max-rate 0) to measure what the bot itself can do; with 30 the text rate cannot pass
30 replies/s. The flood limit per user is raised out of the way too (SKINCARE_FLOOD_MAX_MESSAGES).
The machine may be shared with other work, and FakeTelegram and the simulated users run on the
same CPUs as the bot: what the bot gets is what is left.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from telegram_server import BotCall, FakeTelegram, FakeUser  # noqa: E402

DATASET = ROOT.parent / "shared/datasets/skin-photos"
REPLY_METHODS = frozenset({"sendMessage", "sendPhoto", "sendVenue", "sendDocument"})
REPLY_TIMEOUT = 30.0
FOLLOW_UPS = 3
QUESTIONS = {
    "en": [
        "is it contagious?",
        "how long until it gets better?",
        "can I use a steroid cream?",
        "should I see a doctor?",
        "what should I avoid?",
        "does sunscreen help?",
    ],
    "ko": [
        "전염되나요?",
        "스테로이드 연고 써도 되나요?",
        "얼마나 지나야 좋아지나요?",
        "병원에 가야 하나요?",
        "피해야 할 것이 있나요?",
        "자외선 차단제가 도움이 되나요?",
    ],
}


class CountingTelegram(FakeTelegram):
    """FakeTelegram that counts the bot's messages per chat and wakes only that chat's waiter
    (FakeTelegram's own waits scan every message on every call: too slow at hundreds a second).
    """

    def __init__(self) -> None:
        super().__init__()
        self.replies: dict[int, int] = defaultdict(int)
        self._waiters: dict[int, tuple[int, asyncio.Future]] = {}

    def _record(self, call: BotCall) -> None:
        super()._record(call)
        if call.ok and call.method in REPLY_METHODS:
            chat = int(call.params["chat_id"])
            self.replies[chat] += 1
            waiter = self._waiters.get(chat)
            if waiter and self.replies[chat] >= waiter[0] and not waiter[1].done():
                waiter[1].set_result(time.perf_counter())

    async def wait_reply(self, chat: int, count: int, timeout: float) -> float | None:
        """perf_counter() when the chat has `count` bot messages; None after `timeout`."""
        if self.replies[chat] >= count:
            return time.perf_counter()
        future = asyncio.get_running_loop().create_future()
        self._waiters[chat] = (count, future)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return None
        finally:
            self._waiters.pop(chat, None)


@dataclass
class Stats:
    photo_latencies: list[float] = field(default_factory=list)
    text_latencies: list[float] = field(default_factory=list)
    sent: int = 0
    lost: int = 0
    photos: int = 0
    texts: int = 0
    events: list[tuple[float, str, float]] = field(default_factory=list)  # (sent at, kind, s)
    driver_cpu: float = 0.0  # this process: FakeTelegram and the simulated users


async def exchange(tg: CountingTelegram, user: FakeUser, send, kind: str, stats: Stats) -> bool:
    before = tg.replies[user.id]
    started = time.perf_counter()
    send()
    stats.sent += 1
    answered = await tg.wait_reply(user.id, before + 1, REPLY_TIMEOUT)
    if answered is None:
        stats.lost += 1
        return False
    latency = answered - started
    (stats.photo_latencies if kind == "photo" else stats.text_latencies).append(latency)
    stats.events.append((started, kind, latency))
    if kind == "photo":
        stats.photos += 1
    else:
        stats.texts += 1
    return True


async def user_loop(
    tg: CountingTelegram,
    user: FakeUser,
    photos: list[bytes],
    deadline: float,
    stats: Stats,
    with_photos: bool,
    rng: random.Random,
) -> None:
    questions = QUESTIONS[user.language_code or "en"]
    while time.perf_counter() < deadline:
        if with_photos:
            photo = rng.choice(photos)
            await exchange(tg, user, lambda p=photo: tg.send_photo(user, p), "photo", stats)
        for _ in range(FOLLOW_UPS if with_photos else 20):
            if time.perf_counter() >= deadline:
                break
            question = rng.choice(questions)
            await exchange(tg, user, lambda q=question: tg.send_text(user, q), "text", stats)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in MB, from /proc."""
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                values[key] = int(value.split()[0]) // 1024
    except OSError:
        pass
    return values


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def lock_store(db: Path, seconds: float) -> None:
    """Hold SQLite's write lock on the bot's database (run in a thread)."""
    conn = sqlite3.connect(db, timeout=10, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        time.sleep(seconds)
        conn.execute("ROLLBACK")
    finally:
        conn.close()


async def inject_faults(tg: CountingTelegram, db: Path, started: float, log: list) -> None:
    await asyncio.sleep(max(0.0, started + 8 - time.perf_counter()))
    log.append(("store locked 4 s", time.perf_counter() - started, 4.0))
    await asyncio.to_thread(lock_store, db, 4.0)
    await asyncio.sleep(max(0.0, started + 16 - time.perf_counter()))
    log.append(
        ("Telegram 429 (retry_after 1) on every call for 3 s", time.perf_counter() - started, 3.0)
    )
    tg.fail_next("*", times=10**9, error_code=429, retry_after=1)
    await asyncio.sleep(3.0)
    tg.clear_failures()


def latency_line(name: str, values: list[float]) -> str:
    if not values:
        return f"  {name}: none"
    return (
        f"  {name}: p50 {percentile(values, 0.5) * 1000:.0f} ms, "
        f"p95 {percentile(values, 0.95) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms "
        f"({len(values)})"
    )


async def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    paths = sorted(DATASET.rglob("*.jpg"))
    photos = [p.read_bytes() for p in rng.sample(paths, min(args.photos, len(paths)))]
    workdir = Path(tempfile.mkdtemp(prefix="skincare-load-"))
    db = workdir / "load.sqlite3"
    async with CountingTelegram() as tg:
        env = {
            **os.environ,
            "TELEGRAM_BOT_TOKEN": tg.token,
            "TELEGRAM_BASE_URL": tg.base_url,
            "TELEGRAM_BASE_FILE_URL": tg.base_file_url,
            "SKINCARE_DB": str(db),
            "SKINCARE_WEB_HOST": "127.0.0.1",
            "SKINCARE_WEB_PORT": str(free_port()),
            "SKINCARE_LOG_LEVEL": "WARNING",
            "SKINCARE_FLOOD_MAX_MESSAGES": "10000",
            "SKINCARE_TELEGRAM_MAX_RATE": str(args.telegram_max_rate),
        }
        command = [sys.executable, "-m", "bot"]
        if args.profile:
            command = [sys.executable, "-m", "cProfile", "-o", str(args.profile), "-m", "bot"]
        log_file = (workdir / "bot.log").open("w")
        started = time.perf_counter()
        bot = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=log_file)
        try:
            return await drive(args, tg, bot, started, photos, db, workdir, rng)
        finally:
            if bot.poll() is None:
                bot.send_signal(signal.SIGINT)
                try:
                    await asyncio.to_thread(bot.wait, 20)
                except subprocess.TimeoutExpired:
                    bot.kill()
            log_file.close()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def drive(args, tg, bot, started, photos, db, workdir, rng) -> int:
    probe = tg.user(first_name="Probe", language_code="en")
    tg.send_command(probe, "/start")
    first = await tg.wait_reply(probe.id, 1, 120)
    if first is None:
        print(f"the bot did not answer within 120 s; its log: {workdir / 'bot.log'}")
        return 1
    first_reply = first - started
    photo_sent = time.perf_counter()
    tg.send_photo(probe, photos[0])
    first_photo = await tg.wait_reply(probe.id, 2, 120)
    first_photo_s = (first_photo - started) if first_photo else float("nan")
    first_photo_alone = (first_photo - photo_sent) if first_photo else float("nan")
    rss_idle = proc_status(bot.pid).get("VmRSS", 0)

    users = [
        tg.user(first_name=f"User{i}", language_code="ko" if i % 2 else "en")
        for i in range(args.users)
    ]
    for user in users:  # as people do: /start first (not measured)
        tg.send_command(user, "/start")
    for user in users:
        await tg.wait_reply(user.id, 1, 60)

    results = {}
    fault_log: list = []
    phases = [("mixed", args.seconds, True), ("text", args.text_seconds, False)]
    for name, seconds, with_photos in phases:
        if seconds <= 0:
            continue
        stats = Stats()
        cpu_before = cpu_seconds(bot.pid)
        driver_before = time.process_time()
        phase_start = time.perf_counter()
        deadline = phase_start + seconds
        faults = None
        if args.inject_faults and name == "mixed":
            faults = asyncio.create_task(inject_faults(tg, db, phase_start, fault_log))
        await asyncio.gather(
            *(
                user_loop(tg, user, photos, deadline, stats, with_photos, random.Random(i))
                for i, user in enumerate(users)
            )
        )
        elapsed = time.perf_counter() - phase_start
        if faults is not None:
            await faults
        stats_cpu = cpu_seconds(bot.pid) - cpu_before
        stats.driver_cpu = time.process_time() - driver_before
        results[name] = (stats, elapsed, stats_cpu, phase_start)

    status = proc_status(bot.pid)
    print_report(
        args, results, first_reply, first_photo_s, first_photo_alone, rss_idle, status, fault_log
    )
    lost = sum(stats.lost for stats, *_ in results.values())
    return 1 if lost else 0


def print_report(
    args, results, first_reply, first_photo, first_photo_alone, rss_idle, status, fault_log
) -> None:
    print(
        f"bot: python -m bot (subprocess), bundled model, SQLite; {args.users} users; "
        f"SKINCARE_TELEGRAM_MAX_RATE={args.telegram_max_rate}; "
        f"faults: {'yes' if args.inject_faults else 'no'}"
    )
    print(
        f"start-up: first reply (/start) {first_reply:.2f} s after the process was spawned; "
        f"first photo answered {first_photo:.2f} s after spawn ({first_photo_alone:.2f} s after "
        "it was sent)"
    )
    print(f"memory: RSS {rss_idle} MB after start-up, peak RSS (VmHWM) {status.get('VmHWM')} MB")
    for name, (stats, elapsed, cpu, phase_start) in results.items():
        print(
            f"\n{name} phase, {elapsed:.0f} s: {stats.sent} updates, lost {stats.lost}; "
            f"CPU: bot {cpu / elapsed:.2f} cores, "
            f"FakeTelegram + users {stats.driver_cpu / elapsed:.2f}"
        )
        if stats.photos:
            print(f"  photos: {stats.photos / elapsed:.1f}/s")
            print(latency_line("photo -> reply", stats.photo_latencies))
        print(f"  text updates: {stats.texts / elapsed:.1f}/s")
        print(latency_line("text -> reply", stats.text_latencies))
        if name == "mixed" and fault_log:
            for what, at, duration in fault_log:
                window = [
                    latency
                    for sent, kind, latency in stats.events
                    if at - 1 <= sent - phase_start <= at + duration
                ]
                print(
                    f"  fault at t={at:.0f} s: {what}; updates sent then: {len(window)}, "
                    f"max reply {max(window, default=float('nan')) * 1000:.0f} ms"
                )
    mixed = results.get("mixed")
    text = results.get("text")
    print("\ntargets:")
    if mixed:
        p95 = percentile(mixed[0].photo_latencies, 0.95)
        print(
            f"  p95 photo->reply <= 1.0 s at {args.users} users: {p95:.2f} s "
            f"{'reached' if p95 <= 1.0 else 'NOT reached'}"
        )
    if text:
        rate = text[0].texts / text[1]
        print(
            f"  >= 300 text updates/s: {rate:.0f}/s {'reached' if rate >= 300 else 'NOT reached'}"
        )
    peak = status.get("VmHWM", 0)
    print(f"  RSS <= 700 MB: {peak} MB {'reached' if peak <= 700 else 'NOT reached'}")
    print(
        f"  first reply within 5 s of start-up: {first_reply:.2f} s "
        f"{'reached' if first_reply <= 5 else 'NOT reached'}"
    )
    lost = sum(stats.lost for stats, *_ in results.values())
    print(f"  replies lost = 0: {lost} {'reached' if lost == 0 else 'NOT reached'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0, help="mixed phase")
    parser.add_argument("--text-seconds", type=float, default=10.0, help="text-only phase")
    parser.add_argument("--photos", type=int, default=200, help="distinct real photos used")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--inject-faults", action="store_true")
    parser.add_argument("--telegram-max-rate", type=float, default=0.0)
    parser.add_argument("--profile", type=Path, help="run the bot under cProfile, write here")
    args = parser.parse_args()
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
