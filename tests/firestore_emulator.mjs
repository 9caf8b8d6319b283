// Starts the @firestore-emulator/server Firestore emulator for the tests, on 127.0.0.1 only.
//
//   node tests/firestore_emulator.mjs EMULATOR_DIR [PORT]
//
// EMULATOR_DIR is the npm prefix the package was installed into (`.emulator/`, see the
// Makefile). PORT 0 (the default) lets the OS pick a free port, so parallel runs never race
// for one. When the server listens, one JSON line goes to stdout: {"host": ..., "port": ...}.
//
// The package's own FirestoreServer.start(port) binds 0.0.0.0, which would expose an
// unauthenticated database on every interface of a CI machine; we bind its gRPC server to
// the loopback interface ourselves instead.
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [emulatorDir, portArg = "0"] = process.argv.slice(2);
if (!emulatorDir) {
  console.error("usage: node firestore_emulator.mjs EMULATOR_DIR [PORT]");
  process.exit(2);
}
const require = createRequire(pathToFileURL(path.resolve(emulatorDir, "package.json")));
const { FirestoreServer } = require("@firestore-emulator/server");
const { ServerCredentials } = require("@grpc/grpc-js");

const emulator = new FirestoreServer();
const grpcServer = emulator.server; // a TypeScript-private field, there at run time
if (typeof grpcServer?.bindAsync !== "function") {
  console.error("@firestore-emulator/server changed: FirestoreServer.server is not a gRPC server");
  process.exit(2);
}

// An unimplemented RPC throws inside its handler; log it and keep serving the other tests
// (the client's deadline turns the unanswered call into an error on its side).
process.on("uncaughtException", (error) => console.error("emulator error:", error));

const host = "127.0.0.1";
grpcServer.bindAsync(
  `${host}:${Number(portArg)}`,
  ServerCredentials.createInsecure(),
  (error, port) => {
    if (error) {
      console.error(`cannot listen on ${host}:${portArg}: ${error.message}`);
      process.exit(1);
    }
    process.stdout.write(`${JSON.stringify({ host, port })}\n`);
  },
);

const shutdown = () => {
  grpcServer.forceShutdown();
  process.exit(0);
};
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, shutdown);
}
// The test process holds our stdin open; when it ends (even killed), so do we: no emulator is
// ever left running after a test run.
process.stdin.on("end", shutdown);
process.stdin.on("error", shutdown);
process.stdin.resume();
