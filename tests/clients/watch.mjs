// Watches a contract's `Ping(address indexed from, uint256 value)` events over HTTP polling filters, as an
// application would, with ethers v6 (`contract.on`) or viem (`watchContractEvent`), until its standard input
// closes; then prints every event it received, one JSON object per line, and exits.
//
//   node tests/clients/watch.mjs ethers|viem RPC_URL CONTRACT PROGRESS_FILE
//
// Each line: {"blockHash", "logIndex", "transactionHash", "removed"}. The test (tests/filters.rs) checks that
// the added events minus the removed ones are the chain's, each once. PROGRESS_FILE holds how many added
// (not removed) events the library has delivered so far, rewritten on each: the test waits on it rather than
// on a fixed time, which a loaded machine's slow polls outlast. PROGRESS_FILE.filter holds the id of the
// filter the library installed, written once the library is watching (see `ready` below): the test sends
// no event before both libraries have written it. WATCH_DEBUG=1 in the environment writes every request and
// answer to standard error (the test shows it when it fails).
import { writeFileSync } from "node:fs";
import { ethers } from "ethers";
import { createPublicClient, http, parseAbi } from "viem";

const [library, url, address, progress] = process.argv.slice(2);
const seen = [];
const record = (log) => {
  seen.push({
    blockHash: log.blockHash,
    logIndex: Number(log.logIndex ?? log.index),
    transactionHash: log.transactionHash,
    removed: Boolean(log.removed),
  });
  writeFileSync(progress, String(seen.filter((e) => !e.removed).length));
};

// Ready (PROGRESS_FILE.filter written, with the filter's id) once the server has answered the library's
// eth_newFilter and, for ethers, the first eth_blockNumber it sent after that: ethers asks for a filter's
// changes only when its block poller sees the head move, and that poller's first answer only sets where it
// starts from, so events mined before it would wait for a block after them (the test's chain stops).
let filterId = null;
let bootstrap = null; // ethers: the id of the first eth_blockNumber sent once the filter was installed
const newFilters = new Set();
const ready = () => writeFileSync(`${progress}.filter`, filterId);
const asked = (payload) => {
  for (const p of [payload].flat()) {
    if (p?.method === "eth_newFilter") newFilters.add(p.id);
    if (library === "ethers" && p?.method === "eth_blockNumber" && filterId !== null && bootstrap === null) {
      bootstrap = p.id;
    }
  }
};
const answered = (answers) => {
  for (const a of [answers].flat()) {
    if (filterId === null && newFilters.has(a?.id) && typeof a?.result === "string") {
      filterId = a.result;
      if (library === "viem") ready();
    }
    if (bootstrap !== null && a?.id === bootstrap) ready();
  }
};

let stop;
if (library === "ethers") {
  // JsonRpcProvider over HTTP watches events with eth_newFilter / eth_getFilterChanges (not eth_getLogs).
  const provider = new ethers.JsonRpcProvider(url, undefined, { staticNetwork: true, pollingInterval: 200 });
  provider.pollingInterval = 200;
  // A removed log does not reach the event's listener: ethers 6.15 means to emit it as the "orphan" event the
  // received log names (`log.removedEvent()`), but looks that subscription up under a tag built from the whole
  // removed log, which never equals the one `removedEvent()` registers, so no listener hears it. What the
  // server told ethers is taken from ethers' own debug events instead: the removed logs in its answers (and,
  // for PROGRESS_FILE.filter, its eth_newFilter and eth_blockNumber requests; hence registered before
  // `contract.on`).
  provider.on("debug", (e) => {
    if (process.env.WATCH_DEBUG) console.error(JSON.stringify(e));
    if (e.action === "sendRpcPayload") asked(e.payload);
    if (e.action !== "receiveRpcResult") return;
    answered(e.result ?? []);
    for (const answer of e.result ?? []) {
      if (!Array.isArray(answer?.result)) continue;
      for (const log of answer.result) if (log?.removed === true) record(log);
    }
  });
  const contract = new ethers.Contract(address, ["event Ping(address indexed from, uint256 value)"], provider);
  await contract.on("Ping", (from, value, event) => record(event.log));
  stop = () => contract.removeAllListeners();
} else if (library === "viem") {
  // viem's own fetch, watched for the answer to its eth_newFilter (PROGRESS_FILE.filter).
  const fetchFn = async (input, init) => {
    const response = await fetch(input, init);
    if (process.env.WATCH_DEBUG) console.error(init?.body, JSON.stringify(await response.clone().json()));
    try {
      const body = JSON.parse(init?.body ?? "null");
      if ([body].flat().some((b) => b?.method === "eth_newFilter")) {
        asked(body);
        answered(await response.clone().json());
      }
    } catch (e) {
      console.error(`viem: reading an answer: ${e.message}`);
    }
    return response;
  };
  const client = createPublicClient({ transport: http(url, { fetchFn }), pollingInterval: 200 });
  const unwatch = client.watchContractEvent({
    address,
    abi: parseAbi(["event Ping(address indexed from, uint256 value)"]),
    eventName: "Ping",
    poll: true,
    onLogs: (logs) => logs.forEach(record),
    onError: (e) => console.error(`viem: ${e.message}`),
  });
  stop = unwatch;
} else {
  console.error(`unknown library ${library}: ethers or viem`);
  process.exit(2);
}
console.error(`${library}: watching ${address} at ${url}`);
process.stdin.resume();
process.stdin.on("end", async () => {
  // A last poll or two after the chain stopped moving.
  await new Promise((r) => setTimeout(r, 1500));
  await stop();
  for (const e of seen) process.stdout.write(JSON.stringify(e) + "\n");
  process.exit(0);
});
