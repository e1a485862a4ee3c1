// What the Node.js client scripts share: the command line, the records they
// publish, the MGET loop and the report the Rust test (tests/clients.rs)
// compares exactly. Each script only says how its library connects and calls
// SET and MGET.
'use strict';

// Usage: node <script> PORT PUB_DSN SUB_DSN [PACKAGE]
// PACKAGE is the library's npm name, or the alias of another major of it in
// package.json (e.g. ioredis5); it also names the client in the record keys.
function args(defaultPackage) {
  const [port, pubDsn, subDsn, pkg = defaultPackage] = process.argv.slice(2);
  if (!port || !pubDsn || !subDsn) {
    throw new Error(`usage: node ${process.argv[1]} PORT PUB_DSN SUB_DSN [PACKAGE]`);
  }
  const colon = pubDsn.indexOf(':');
  return {
    host: '127.0.0.1',
    port: Number(port),
    pubDsn,
    subDsn,
    // The username/password form: AUTH <key> <rest> is AUTH <key>:<rest>.
    pubUser: pubDsn.slice(0, colon),
    pubRest: pubDsn.slice(colon + 1),
    pkg,
    library: require(pkg),
  };
}

// The records each script publishes, as [key, value, auth form]: two with the
// whole AUTH string as the password, one with the username/password form.
function records(client) {
  return [
    [`${client}-password`, '{"n":1}', 'password'],
    [`${client}-password`, '{"n":2}', 'password'],
    [`${client}-username`, '{"n":3}', 'username'],
  ];
}

// MGETs (each call a long poll of at most the gateway's poll_timeout) until
// `count` messages arrived. Bounded so that a gateway that never delivers
// fails the test with a report instead of hanging it; the Rust side's own
// timeout is longer.
async function consume(mget, count, limitMs = 20000) {
  const deadline = Date.now() + limitMs;
  const consumed = [];
  while (consumed.length < count && Date.now() < deadline) {
    consumed.push(...(await mget()));
  }
  return consumed;
}

// Runs `main` and prints its report as one line of JSON; any error is printed
// on stderr with a non-zero exit, so the Rust test shows it.
function run(main) {
  main().then(
    (report) => {
      process.stdout.write(JSON.stringify(report) + '\n');
      process.exit(0);
    },
    (err) => {
      process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
      process.exit(1);
    },
  );
}

module.exports = { args, records, consume, run };
