/**
 * Hostile input, fuzzed with fast-check over every /v1 endpoint: random and
 * mutated JSON bodies, wrong types, huge strings, unicode edge cases (lone
 * surrogates, NUL, BOM, invalid UTF-8), broken JSON, wrong Content-Types, bad
 * headers, ids and query parameters.
 *
 * Whatever comes in: never a 5xx; every error is `{"error":{message,type,param,code}}`;
 * and what is stored afterwards is exactly what the accepted requests asked
 * for: nothing at all for a refused one, and every text byte for byte as sent.
 *
 * Each request is checked against a snapshot of the tenant's conversations,
 * messages and idempotency keys taken just before it and just after it (after
 * any reply it started has ended), so a failure names the one request at fault.
 * FUZZ_RUNS_SCALE=10 runs every property ten times as often (minutes, not seconds).
 */
import { isDeepStrictEqual } from "node:util";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { readEvents, type SseEvent } from "../support/http.ts";
import { TEST_API_KEY, TEST_TENANT } from "../support/keys.ts";
import { useTestService } from "../support/service.ts";

const MODEL = "parley-sim-1";
// Low limits, so that breaking them costs a few kilobytes, not megabytes.
const MAX_BODY_BYTES = 16 * 1024;
const MAX_CONTENT_CHARS = 400;
const MAX_PAGE_LIMIT = 100;

const ctx = useTestService({
  MAX_BODY_BYTES,
  MAX_CONTENT_CHARS,
  MAX_PAGE_LIMIT,
  // Hundreds of requests in a few seconds, from one key: fuzzing is not what the rate limit is for.
  RATE_LIMIT_REQUESTS: 1_000_000,
  MAX_CONCURRENT_REPLIES: 1_000,
});

/** What the service keeps of a caller's x-request-id (anything else is replaced). */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
/** What an Idempotency-Key may be. */
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;
/** fetch strips this from both ends of a header value before sending it. */
const HTTP_WHITESPACE = /^[\t\n\r ]+|[\t\n\r ]+$/g;
/** A Redis Stream id, `<ms>-<seq>`, each part a 64-bit unsigned number. */
const isStreamId = (id: string) => /^\d+-\d+$/.test(id) && id.split("-").every((part) => BigInt(part) < 2n ** 64n);
const RUN_TIMEOUT_MS = 180_000;

// ---------------------------------------------------------------------------
// Requests: what the fuzzer generates is a plan (plain data, printable when a
// property fails); it is turned into a real request once fixtures exist.
// ---------------------------------------------------------------------------

type Route =
  | "createConversation"
  | "listConversations"
  | "getConversation"
  | "updateConversation"
  | "deleteConversation"
  | "appendMessage"
  | "listMessages"
  | "getMessage"
  | "followEvents"
  | "cancelReply"
  | "statelessCompletion"
  | "boundCompletion"
  | "listModels";

const ROUTES: Record<Route, { method: "GET" | "POST" | "PATCH" | "DELETE"; path: string }> = {
  createConversation: { method: "POST", path: "/conversations" },
  listConversations: { method: "GET", path: "/conversations" },
  getConversation: { method: "GET", path: "/conversations/{c}" },
  updateConversation: { method: "PATCH", path: "/conversations/{c}" },
  deleteConversation: { method: "DELETE", path: "/conversations/{c}" },
  appendMessage: { method: "POST", path: "/conversations/{c}/messages" },
  listMessages: { method: "GET", path: "/conversations/{c}/messages" },
  getMessage: { method: "GET", path: "/conversations/{c}/messages/{m}" },
  followEvents: { method: "GET", path: "/conversations/{c}/messages/{m}/events" },
  cancelReply: { method: "POST", path: "/conversations/{c}/messages/{m}/cancel" },
  statelessCompletion: { method: "POST", path: "/chat/completions" },
  boundCompletion: { method: "POST", path: "/conversations/{c}/chat/completions" },
  listModels: { method: "GET", path: "/models" },
};
const BODY_ROUTES = ["createConversation", "updateConversation", "appendMessage", "statelessCompletion", "boundCompletion"] as const;
type BodyRoute = (typeof BODY_ROUTES)[number];
const ALL_ROUTES = Object.keys(ROUTES) as Route[];

/** A conversation named in a path: one of ours, a near miss of one of ours, or any text. */
type ConvRef = { ours: "history" | "replied" | "fresh" } | { near: "history" | "replied"; how: NearMiss } | { raw: string };
/** A message named in a path, likewise. */
type MsgRef = { ours: "reply" | "user" | "imported" } | { near: "reply" | "user"; how: NearMiss } | { raw: string };
type NearMiss = "upper" | "chop" | "extend" | "flip" | "otherPrefix" | "otherKind" | "padded";

/** A JSON text fragment written as is: numbers JSON.stringify cannot write (1e309, -0), deep nesting. */
class RawJson {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
  toString() {
    return `RawJson(${this.text.length > 40 ? `${this.text.slice(0, 40)}…` : this.text})`;
  }
}

type Body =
  | { kind: "none"; contentType?: string }
  | { kind: "json"; value: unknown; contentType?: string; chunked?: boolean }
  | { kind: "text"; text: string; contentType?: string }
  | { kind: "bytes"; bytes: number[]; contentType?: string };

interface Plan {
  route: Route;
  conv: ConvRef;
  msg: MsgRef;
  /** Query pairs, already encoded (they may hold percent-escapes no string encodes to). */
  query: [string, string][];
  headers: Record<string, string>;
  /** Leave Authorization out (the plan's headers may still set one). */
  noAuth?: boolean;
  body: Body;
}

interface Fixtures {
  history: { id: string; imported: string };
  replied: { id: string; user: string; reply: string; eventIds: string[] };
}

interface Probe {
  plan: Plan;
  method: string;
  url: string;
  headers: Record<string, string>;
  bytes: Uint8Array | null;
  chunked: boolean;
  /** Our conversation / message the path names exactly, when it does. */
  conversationId: string | null;
  messageId: string | null;
  label: string;
}

// ---------------------------------------------------------------------------
// Text and values
// ---------------------------------------------------------------------------

/** Text Postgres cannot store unchanged: lone surrogates and NUL. */
const UNSTORABLE = ["\uD800", "\uDBFF", "\uDC00", "\uDFFF", "\u0000"];
/** Storable, but easy to get wrong somewhere between the socket and the row. */
const ODD = [
  "\uFEFF", "\u200B", "\u200D", "\u202E", "\uFFFD", "\uFFFE", "\uFFFF", "\u{10FFFF}", "\u{1F600}", "👩‍👩‍👧",
  "e\u0301", "\u0085", "\u2028", "\u2029", "\t", "\r\n", "\u001b", "\\", '"', "'", "<b>", "%00", "\\u0000",
  "${x}", "__proto__", "𝕏", "ß", "İ", "\u00a0",
];
const storableChar = fc.oneof(
  { arbitrary: fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 1 }), weight: 5 },
  { arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }).filter((c) => c !== "\u0000"), weight: 3 },
  { arbitrary: fc.constantFrom(...ODD), weight: 2 },
);
const hostileChar = fc.oneof({ arbitrary: storableChar, weight: 6 }, { arbitrary: fc.constantFrom(...UNSTORABLE), weight: 1 });
const storableText = (maxLength = 12) => fc.string({ unit: storableChar, maxLength });
const hostileText = (maxLength = 12) => fc.string({ unit: hostileChar, maxLength });

const isStorable = (s: string) => !s.includes("\u0000") && s.isWellFormed();

/** An object with exactly these own keys, `__proto__` included (an object literal would set the prototype instead). */
function objectOf(entries: [string, unknown][]): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const [k, v] of entries) Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  return o;
}
const dictionary = (key: fc.Arbitrary<string>, value: fc.Arbitrary<unknown>, maxLength: number) =>
  fc.uniqueArray(fc.tuple(key, value), { selector: ([k]) => k, maxLength }).map(objectOf);

const trickyKey = fc.constantFrom("__proto__", "constructor", "toString", "hasOwnProperty", "", " ", "a.b", "0");
const keyOf = (text: fc.Arbitrary<string>) => fc.oneof({ arbitrary: text, weight: 6 }, { arbitrary: trickyKey, weight: 1 });
const metadataOf = (text: (n?: number) => fc.Arbitrary<string>) => dictionary(keyOf(text(8)), text(10), 3);
/**
 * Sampling params, short replies (`max_tokens`), plus fields of any name;
 * never `simulate`, the simulator's on-demand failure switch.
 */
const paramsOf = (text: (n?: number) => fc.Arbitrary<string>) =>
  fc
    .tuple(fc.integer({ min: 1, max: 6 }), dictionary(keyOf(text(8)), fc.jsonValue({ maxDepth: 2, stringUnit: storableChar }), 3))
    .map(([maxTokens, extra]) => objectOf([...Object.entries(extra), ["max_tokens", maxTokens]]))
    .filter((p) => !Object.hasOwn(p, "simulate"));

// ---------------------------------------------------------------------------
// Valid bodies, per route
// ---------------------------------------------------------------------------

function validBody(route: BodyRoute, text: (n?: number) => fc.Arbitrary<string> = storableText): fc.Arbitrary<unknown> {
  const metadata = metadataOf(text);
  const params = paramsOf(text);
  const chatMessage = (role: fc.Arbitrary<string>) =>
    fc.record(
      {
        role,
        content: fc.oneof(text(16), fc.array(fc.record({ type: fc.constant("text"), text: text(8) }), { minLength: 1, maxLength: 2 })),
        name: fc.string({ maxLength: 6 }),
      },
      { requiredKeys: ["role", "content"] },
    );
  const completion = fc.record(
    {
      model: fc.constant(MODEL),
      messages: fc
        .tuple(fc.array(chatMessage(fc.constantFrom("system", "developer", "user", "assistant")), { maxLength: 2 }), chatMessage(fc.constant("user")))
        .map(([first, last]) => [...first, last]),
      stream: fc.boolean(),
      max_tokens: fc.integer({ min: 1, max: 6 }),
      temperature: fc.double({ min: 0, max: 2, noNaN: true }),
      top_p: fc.double({ min: 0, max: 1, noNaN: true }),
      stop: fc.oneof(text(4), fc.array(text(3), { maxLength: 2 })),
      seed: fc.integer(),
      user: text(8),
    },
    { requiredKeys: ["model", "messages", "max_tokens"] },
  );
  switch (route) {
    case "createConversation":
      return fc.record(
        {
          model: fc.constant(MODEL),
          system: fc.option(text(24), { nil: null }),
          title: fc.option(text(12), { nil: null }),
          params,
          metadata,
          messages: fc.array(
            fc.record({ role: fc.constantFrom("system", "user", "assistant"), content: text(16), metadata }, { requiredKeys: ["role", "content"] }),
            { maxLength: 3 },
          ),
        },
        { requiredKeys: [] },
      );
    case "updateConversation":
      return fc.record(
        { title: fc.option(text(12), { nil: null }), system: fc.option(text(24), { nil: null }), model: fc.constant(MODEL), params, metadata },
        { requiredKeys: [] },
      );
    case "appendMessage":
      return fc.oneof(
        fc
          .record(
            { role: fc.constant("user"), content: text(24), metadata, reply: fc.boolean(), params, stream: fc.boolean(), wait: fc.boolean() },
            { requiredKeys: ["content"] },
          )
          // `stream: true` needs a reply to stream.
          .map(({ stream, ...rest }) => (rest.reply === false || stream === undefined ? rest : { ...rest, stream })),
        fc.record({ role: fc.constantFrom("assistant", "system"), content: text(24), metadata, reply: fc.constant(false) }, { requiredKeys: ["role", "content"] }),
      );
    case "statelessCompletion":
    case "boundCompletion":
      return completion;
  }
}

// ---------------------------------------------------------------------------
// Mutations of valid bodies
// ---------------------------------------------------------------------------

const hugeString = fc
  .tuple(fc.constantFrom("a", "é", "\u{1F600}", " ", "\u0000", "\uD800"), fc.constantFrom(MAX_CONTENT_CHARS + 1, 513, 65, 2048, MAX_BODY_BYTES + 1))
  .map(([c, n]) => c.repeat(n));
const deepNesting = fc.oneof(
  fc.integer({ min: 30, max: 3000 }).map((d) => new RawJson("[".repeat(d) + "]".repeat(d))),
  fc.integer({ min: 30, max: 200 }).map((d) => new RawJson('{"a":'.repeat(d) + "1" + "}".repeat(d))),
);
const oddNumber = fc.oneof(
  fc.constantFrom(
    new RawJson("1e309"), new RawJson("-1e309"), new RawJson("-0"), new RawJson("1E400"), new RawJson("1e-400"),
    new RawJson("123456789012345678901234567890"), new RawJson("1.0"), new RawJson("0.1e1"),
  ),
  fc.constantFrom(0, -1, 1.5, 2 ** 53 + 1, Number.MAX_VALUE, Number.MIN_VALUE, -Number.MAX_VALUE),
  fc.constantFrom("NaN", "Infinity", "-0", "1e309", "", "0x10", "1"),
);
/** A value of the wrong type, or of the right type and the wrong size. */
const oddValue = fc.oneof(
  { arbitrary: fc.jsonValue({ maxDepth: 2, stringUnit: hostileChar }), weight: 4 },
  { arbitrary: fc.constantFrom(true, false, null, [], {}, "", "user", "parley-sim-1", [null], [{}]), weight: 2 },
  { arbitrary: oddNumber, weight: 2 },
  { arbitrary: hugeString, weight: 1 },
  { arbitrary: deepNesting, weight: 1 },
);
const FIELD_NAMES = [
  "model", "system", "title", "params", "metadata", "messages", "role", "content", "reply", "stream", "wait",
  "max_tokens", "temperature", "top_p", "stop", "seed", "n", "tools", "logprobs", "stream_options", "name", "type",
  "text", "tool_calls", "__proto__", "id", "object", "usage",
];
const fieldName = fc.oneof({ arbitrary: fc.constantFrom(...FIELD_NAMES), weight: 3 }, { arbitrary: hostileText(8), weight: 1 });

type Mutation =
  | { op: "drop"; at: number }
  | { op: "replace"; at: number; value: unknown }
  | { op: "add"; at: number; key: string; value: unknown }
  | { op: "spoil"; at: number; insert: string; pos: number }
  | { op: "root"; value: unknown };
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { arbitrary: fc.record({ op: fc.constant("drop" as const), at: fc.nat() }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant("replace" as const), at: fc.nat(), value: oddValue }), weight: 4 },
  { arbitrary: fc.record({ op: fc.constant("add" as const), at: fc.nat(), key: fieldName, value: oddValue }), weight: 2 },
  {
    arbitrary: fc.record({
      op: fc.constant("spoil" as const),
      at: fc.nat(),
      insert: fc.constantFrom(...UNSTORABLE, "\uD83D", "\uDE00\uD83D", ...ODD),
      pos: fc.nat(),
    }),
    weight: 3,
  },
  { arbitrary: fc.record({ op: fc.constant("root" as const), value: oddValue }), weight: 1 },
);

type Path = (string | number)[];
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof RawJson);

function clone(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(clone);
  if (isObject(v)) return objectOf(Object.entries(v).map(([k, x]) => [k, clone(x)]));
  return v;
}
function pathsIn(v: unknown, at: Path = [], out: Path[] = []): Path[] {
  const children: [string | number, unknown][] = Array.isArray(v) ? v.map((x, i) => [i, x]) : isObject(v) ? Object.entries(v) : [];
  for (const [k, x] of children) {
    out.push([...at, k]);
    pathsIn(x, [...at, k], out);
  }
  return out;
}
function valueAt(root: unknown, path: Path): unknown {
  return path.reduce<unknown>((v, k) => (v as Record<string | number, unknown>)[k], root);
}
function setAt(root: unknown, path: Path, value: unknown | typeof DROP): unknown {
  if (path.length === 0) return value;
  const parent = valueAt(root, path.slice(0, -1)) as Record<string | number, unknown> | unknown[];
  const key = path.at(-1)!;
  if (Array.isArray(parent)) {
    if (value === DROP) parent.splice(key as number, 1);
    else parent[key as number] = value;
  } else if (value === DROP) delete parent[key];
  else Object.defineProperty(parent, key, { value, enumerable: true, writable: true, configurable: true });
  return root;
}
const DROP = Symbol("drop");

function mutate(body: unknown, mutations: Mutation[]): unknown {
  let root = clone(body);
  for (const m of mutations) {
    const paths = pathsIn(root);
    const pick = <T>(list: T[], at: number): T | undefined => list[at % Math.max(list.length, 1)];
    if (m.op === "root") root = clone(m.value);
    else if (m.op === "drop") {
      const path = pick(paths, m.at);
      if (path) root = setAt(root, path, DROP);
    } else if (m.op === "replace") {
      root = setAt(root, pick(paths, m.at) ?? [], clone(m.value));
    } else if (m.op === "add") {
      const containers = [[], ...paths].filter((p) => isObject(valueAt(root, p)));
      const path = pick(containers, m.at);
      if (path) root = setAt(root, [...path, m.key], clone(m.value));
    } else {
      const strings = paths.filter((p) => typeof valueAt(root, p) === "string");
      const path = pick(strings, m.at);
      if (path) {
        const s = valueAt(root, path) as string;
        const pos = m.pos % (s.length + 1);
        root = setAt(root, path, s.slice(0, pos) + m.insert + s.slice(pos));
      }
    }
  }
  return root;
}

/** JSON text of a value that may hold RawJson fragments and own `__proto__` keys. */
function toJsonText(v: unknown): string {
  if (v instanceof RawJson) return v.text;
  if (Array.isArray(v)) return `[${v.map(toJsonText).join(",")}]`;
  if (isObject(v)) return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}:${toJsonText(x)}`).join(",")}}`;
  return JSON.stringify(v) ?? "null";
}

// ---------------------------------------------------------------------------
// Broken bodies, headers, ids and query parameters
// ---------------------------------------------------------------------------

const BROKEN_JSON = [
  "", " ", "{", "}", "[", "]", "{\"title\":}", "{'title':'x'}", "{\"title\":\"x\",}", "{\"title\":\"x\"}{}", "{\"title\":\"x\"} x",
  "null", "undefined", "NaN", "Infinity", "-", "\u0000", "\"\\ud800\"", "{\"title\":\"\\ud800\"}", "{\"title\":\"\\udc00\\ud800\"}",
  "{\"title\":\"\\u0000\"}", "\uFEFF{}", "{\"title\":\"x\",\"title\":\"y\"}", "{\"title\": \"\\x41\"}", "{\"title\": 01}",
  "{\"params\":{\"t\":1e309}}", "{\"title\":\"a\nb\"}", "{\"title\":\"\\u12\"}", "/* c */ {}", "{\"__proto__\":{\"title\":\"x\"}}",
  "{\"metadata\":{\"__proto__\":\"x\"}}", "{\"params\":{\"__proto__\":{\"max_tokens\":1}}}", "[" .repeat(5000) + "]".repeat(5000),
  "{\"content\":\"x\",\"content\":\"\\u0000\"}", "\"just a string\"", "42", "true", "[{\"role\":\"user\",\"content\":\"x\"}]",
];
/** Bytes that are not UTF-8: a lone surrogate as UTF-8 would write one (ED A0 80), overlongs, truncations, stray continuations. */
const BAD_UTF8 = [[0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xed, 0xbf, 0xbf], [0xe2, 0x82], [0xf4, 0x90, 0x80, 0x80], [0x80], [0xc3], [0xf8, 0x88, 0x80, 0x80, 0x80]];
const CONTENT_TYPES = [
  "application/json", "application/json; charset=utf-8", "APPLICATION/JSON", "application/json;charset=UTF-16", "application/merge-patch+json",
  "application/vnd.api+json", "application/json-seq", "application/jsonx", "text/json", "text/plain", "text/plain; charset=utf-8",
  "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/octet-stream", "", "*/*", "application/*", "json",
  "application/json, text/plain", "application/json;", "application/json; charset", "application/json ; charset=utf-8", "application/x_y+json",
  "application/json; charset=\"utf-8\"", "application/json;a=b;c=d", "Application/Json; Charset=UTF-8",
];
const headerChar = fc.oneof(
  { arbitrary: fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 1 }), weight: 8 },
  { arbitrary: fc.integer({ min: 0x80, max: 0xff }).map((c) => String.fromCharCode(c)), weight: 1 },
  { arbitrary: fc.constantFrom("\t", " "), weight: 1 },
);
const headerText = (maxLength = 40) => fc.string({ unit: headerChar, maxLength });
/** A string as a header value can carry it: its UTF-8 bytes, one char each. */
const asHeaderBytes = (s: string) => Buffer.from(s, "utf8").toString("latin1");

const authorization = fc.oneof(
  fc.constantFrom(
    "", "Bearer", "Bearer ", "Basic dGVzdDp0ZXN0", `Bearer ${TEST_API_KEY}x`, `Bearer ${TEST_API_KEY.slice(0, -1)}`,
    `Bearer ${TEST_API_KEY.toUpperCase()}`, `Token ${TEST_API_KEY}`, `Bearer  ${TEST_API_KEY}`, `bearer ${TEST_API_KEY}`,
    `BEARER\t${TEST_API_KEY}`, `Bearer ${TEST_API_KEY} extra`, `Bearer ${TEST_API_KEY},Bearer ${TEST_API_KEY}`, TEST_API_KEY,
    "Bearer prly_", `Bearer ${TEST_API_KEY.slice(0, 17)}_${"0".repeat(48)}`, `Bearer ${"A".repeat(6000)}`, "Bearer é",
    `Bearer ${asHeaderBytes("ключ")}`, `Bearer\u00a0${TEST_API_KEY}`, `Bearer ${TEST_API_KEY}\u00a0`, "Bearer null", "Bearer undefined",
  ),
  headerText(),
  headerText().map((s) => `Bearer ${s}`),
  fc.nat({ max: TEST_API_KEY.length - 1 }).chain((i) => headerChar.map((c) => `Bearer ${TEST_API_KEY.slice(0, i)}${c}${TEST_API_KEY.slice(i + 1)}`)),
);
/** Whether the service should take this Authorization header (as fetch sends it) as TEST_API_KEY's. */
const isOurKey = (header: string) => /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header.replace(HTTP_WHITESPACE, ""))?.[1] === TEST_API_KEY;

const requestId = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9._:-]{1,128}$/),
  fc.constantFrom("", " ", "a".repeat(128), "a".repeat(129), "id with spaces", "id\twith\ttab", "<script>", "é", asHeaderBytes("ключ"), "a/b", "a,b"),
  headerText(140),
);
const idempotencyKey = fc.oneof(
  fc.constantFrom("fuzz-key-1", "fuzz-key-2", "fuzz-key-3"),
  fc.constantFrom("", " ", "k".repeat(255), "k".repeat(256), "key with space", asHeaderBytes("ключ"), "\t"),
  headerText(30),
);
const lastEventId = (fixtures: Fixtures) =>
  fc.oneof(
    fc.constantFrom(...fixtures.replied.eventIds),
    fc.constantFrom(
      "0-0", "0", "-", "1-", "-1", "1-1-1", "00000-0", "1-0 ", "１-0", "", "abc", "18446744073709551615-18446744073709551615",
      "18446744073709551616-0", "99999999999999999999999-0", "0-18446744073709551616", `${Date.now() + 86_400_000}-0`, "1-0",
    ),
    fc.tuple(fc.bigInt({ min: 0n, max: 2n ** 70n }), fc.bigInt({ min: 0n, max: 2n ** 70n })).map(([a, b]) => `${a}-${b}`),
    headerText(24),
  );

/** Percent-encodes every byte but the unreserved ones; a lone surrogate as the bytes UTF-8 would give it (ED A0 80…). */
function percentEncode(s: string): string {
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const unit = s.charCodeAt(i);
    const pair = unit >= 0xd800 && unit <= 0xdbff && i + 1 < s.length && s.charCodeAt(i + 1) >= 0xdc00 && s.charCodeAt(i + 1) <= 0xdfff;
    const bytes =
      unit >= 0xd800 && unit <= 0xdfff && !pair
        ? [0xe0 | (unit >> 12), 0x80 | ((unit >> 6) & 0x3f), 0x80 | (unit & 0x3f)]
        : [...Buffer.from(pair ? s.slice(i, i + 2) : s[i]!, "utf8")];
    if (pair) i++;
    for (const b of bytes) out += /[A-Za-z0-9\-._~]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}
const RAW_SEGMENTS = [
  "conv_", "msg_", "conv_00000000000000000000000000", "conv_01jf3t8vvaf8s9k0d7k6x1s2y3", "msg_01jf3t8vvaf8s9k0d7k6x1s2y3",
  "conv_7zzzzzzzzzzzzzzzzzzzzzzzzz", "%00", "%ED%A0%80", "%FF", "%C0%AF", "%25", "%2F", "a%2F..%2Fb", "%", "%zz", "%E2%82",
  "null", "undefined", "0", "-1", "%20", "conv_%00", "CONV_01JF3T8VVAF8S9K0D7K6X1S2Y3", "k".repeat(3000),
];
// Not "", "." or "..": fetch resolves those before sending, so they would name another route, not a bad id.
const rawSegment = fc
  .oneof(fc.constantFrom(...RAW_SEGMENTS), hostileText(16).map(percentEncode))
  .filter((s) => s !== "" && !/^(\.|%2e)+$/i.test(s));
const nearMiss = fc.constantFrom<NearMiss>("upper", "chop", "extend", "flip", "otherPrefix", "otherKind", "padded");
const convRef: fc.Arbitrary<ConvRef> = fc.oneof(
  { arbitrary: fc.record({ ours: fc.constantFrom("history" as const, "replied" as const, "fresh" as const) }), weight: 6 },
  { arbitrary: fc.record({ near: fc.constantFrom("history" as const, "replied" as const), how: nearMiss }), weight: 2 },
  { arbitrary: fc.record({ raw: rawSegment }), weight: 2 },
);
const msgRef: fc.Arbitrary<MsgRef> = fc.oneof(
  { arbitrary: fc.record({ ours: fc.constantFrom("reply" as const, "user" as const, "imported" as const) }), weight: 6 },
  { arbitrary: fc.record({ near: fc.constantFrom("reply" as const, "user" as const), how: nearMiss }), weight: 2 },
  { arbitrary: fc.record({ raw: rawSegment }), weight: 2 },
);
const queryValue = fc.oneof(
  fc.constantFrom(
    "", "0", "1", "20", "100", "101", "10000", "10001", "-1", "1.5", "1e2", "1e309", "0x10", "%205", "5%20", "NaN", "Infinity", "-0",
    "00100", "9".repeat(400), "asc", "desc", "ASC", "random", "true", "null", "%00", "%ED%A0%80", "%FF", "%", "$conv", "$msg",
  ),
  fc.integer({ min: -5, max: 20_000 }).map(String),
  hostileText(10).map(percentEncode),
);
const queryKey = fc.oneof(
  { arbitrary: fc.constantFrom("limit", "after", "before", "order", "q", "last_event_id"), weight: 5 },
  { arbitrary: fc.constantFrom("LIMIT", "limit[]", "", "%00", "__proto__", "a%20b"), weight: 1 },
);
const query = fc.array(fc.tuple(queryKey, queryValue), { maxLength: 4 });

// ---------------------------------------------------------------------------
// Plans
// ---------------------------------------------------------------------------

const jsonBody = (value: fc.Arbitrary<unknown>): fc.Arbitrary<Body> => value.map((v) => ({ kind: "json" as const, value: v }));
const noBody: Body = { kind: "none" };
const defaultPlan = { conv: { ours: "history" } as ConvRef, msg: { ours: "reply" } as MsgRef, query: [] as [string, string][], headers: {}, body: noBody };

function planFor(route: Route, body: fc.Arbitrary<Body>): fc.Arbitrary<Plan> {
  return fc.record({ route: fc.constant(route), conv: convRef, msg: msgRef, body, query: fc.constant([]), headers: fc.constant({}) });
}

/** A route with a valid body for it (or none, for routes that take none). */
const validPlan = (text?: (n?: number) => fc.Arbitrary<string>) =>
  fc.constantFrom(...ALL_ROUTES).chain((route) =>
    planFor(route, (BODY_ROUTES as readonly Route[]).includes(route) ? jsonBody(validBody(route as BodyRoute, text)) : fc.constant(noBody)),
  );

// ---------------------------------------------------------------------------
// Running a plan
// ---------------------------------------------------------------------------

let fixtures: Fixtures;
const v1 = () => `${ctx.service.url}/v1`;

async function createFreshConversation(): Promise<{ id: string; user: string; imported: string }> {
  const res = await ctx.api.post("/conversations", {
    params: { max_tokens: 3 },
    messages: [
      { role: "user", content: "hi" },
      { role: "assistant", content: "hello" },
    ],
  });
  expect(res.status).toBe(201);
  const history = await ctx.api.get(`/conversations/${res.body.id}/messages`);
  return { id: res.body.id, user: history.body.data[0].id, imported: history.body.data[1].id };
}

function nearMissOf(id: string, how: NearMiss): string {
  const [prefix, rest = ""] = id.split("_");
  switch (how) {
    case "upper":
      return id.toUpperCase();
    case "chop":
      return id.slice(0, -1);
    case "extend":
      return `${id}0`;
    case "flip":
      return `${id.slice(0, -1)}${id.endsWith("a") ? "b" : "a"}`;
    case "otherPrefix":
      return `${prefix === "conv" ? "msg" : "conv"}_${rest}`;
    case "otherKind":
      return prefix === "conv" ? fixtures.replied.reply : fixtures.replied.id;
    case "padded":
      return percentEncode(` ${id}`);
  }
}

async function realize(plan: Plan): Promise<Probe> {
  const spec = ROUTES[plan.route];
  // Deleting one of ours deletes a fresh one: the shared fixtures stay for the other runs.
  const fresh =
    "ours" in plan.conv && (plan.conv.ours === "fresh" || plan.route === "deleteConversation") && spec.path.includes("{c}")
      ? await createFreshConversation()
      : null;
  let conversationId: string | null = null;
  let convSegment: string;
  if ("ours" in plan.conv) {
    conversationId = fresh ? fresh.id : plan.conv.ours === "replied" ? fixtures.replied.id : fixtures.history.id;
    convSegment = conversationId;
  } else if ("near" in plan.conv) {
    convSegment = nearMissOf(plan.conv.near === "replied" ? fixtures.replied.id : fixtures.history.id, plan.conv.how);
  } else convSegment = plan.conv.raw;

  let messageId: string | null = null;
  let msgSegment: string;
  if ("ours" in plan.msg) {
    const ours = plan.msg.ours;
    messageId =
      fresh && ours !== "reply"
        ? ours === "user"
          ? fresh.user
          : fresh.imported
        : ours === "reply"
          ? fixtures.replied.reply
          : ours === "user"
            ? fixtures.replied.user
            : fixtures.history.imported;
    msgSegment = messageId;
  } else if ("near" in plan.msg) {
    msgSegment = nearMissOf(plan.msg.near === "reply" ? fixtures.replied.reply : fixtures.replied.user, plan.msg.how);
  } else msgSegment = plan.msg.raw;

  const path = spec.path.replace("{c}", convSegment).replace("{m}", msgSegment);
  const resolve = (v: string) => v.replace("$conv", fixtures.history.id).replace("$msg", fixtures.history.imported);
  const search = plan.query.map(([k, v]) => `${resolve(k)}=${resolve(v)}`).join("&");
  const url = `${v1()}${path}${search ? `?${search}` : ""}`;

  const headers: Record<string, string> = {};
  if (!plan.noAuth) headers.authorization = `Bearer ${TEST_API_KEY}`;
  let bytes: Uint8Array | null = null;
  const body = plan.body;
  if (body.kind !== "none") {
    bytes =
      body.kind === "json"
        ? new TextEncoder().encode(toJsonText(body.value))
        : body.kind === "text"
          ? new TextEncoder().encode(body.text)
          : Uint8Array.from(body.bytes);
    headers["content-type"] = "application/json";
  }
  if (body.contentType !== undefined) headers["content-type"] = body.contentType;
  Object.assign(headers, plan.headers);
  if (spec.method === "GET") bytes = null; // fetch sends no body with a GET

  const preview = bytes ? new TextDecoder().decode(bytes.slice(0, 160)) : "";
  return {
    plan,
    method: spec.method,
    url,
    headers,
    bytes,
    chunked: body.kind === "json" && body.chunked === true,
    // The path names our conversation only when it got through as is.
    conversationId: conversationId !== null && convSegment === conversationId ? conversationId : null,
    messageId,
    label: `${spec.method} ${path}${search ? `?${search.slice(0, 120)}` : ""} ${JSON.stringify(headers).slice(0, 300)} ${preview}`,
  };
}

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: any;
  events: SseEvent[] | null;
}

async function send(probe: Probe): Promise<Answer> {
  const init: RequestInit & { duplex?: "half" } = {
    method: probe.method,
    headers: probe.headers,
    signal: AbortSignal.timeout(20_000),
  };
  if (probe.bytes) {
    const bytes = probe.bytes;
    if (probe.chunked) {
      init.body = new ReadableStream({
        start(controller) {
          for (let i = 0; i < bytes.length; i += 1000) controller.enqueue(bytes.slice(i, i + 1000));
          controller.close();
        },
      });
      init.duplex = "half";
    } else init.body = bytes;
  }
  let res: Response;
  let text: string;
  try {
    res = await fetch(probe.url, init);
    text = await res.text();
  } catch (err) {
    throw new Error(`${probe.label}: no complete answer (${(err as Error).message})`, { cause: err });
  }
  const type = res.headers.get("content-type") ?? "";
  let json: any = undefined;
  if (type.startsWith("application/json")) {
    try {
      json = JSON.parse(text);
    } catch {
      throw new Error(`${probe.label}: answered ${res.status} with a JSON content type and a body that is not JSON: ${text.slice(0, 200)}`);
    }
  }
  const events = type.startsWith("text/event-stream") ? (await readEvents(new Response(text))).events : null;
  return { status: res.status, headers: res.headers, text, json, events };
}

// ---------------------------------------------------------------------------
// What is stored
// ---------------------------------------------------------------------------

type Row = Record<string, any>;
interface Snapshot {
  conversations: Map<string, Row>;
  messages: Map<string, Row>;
  keys: Map<string, Row>;
}

async function snapshot(): Promise<Snapshot> {
  const sql = ctx.service.sql;
  const [conversations, messages, keys] = await Promise.all([
    sql`select * from conversations where tenant_id = ${TEST_TENANT} order by id`,
    sql`select * from messages where tenant_id = ${TEST_TENANT} order by id`,
    sql`select * from idempotency_keys where tenant_id = ${TEST_TENANT} order by key`,
  ]);
  return {
    conversations: new Map(conversations.map((r) => [r.id as string, { ...r }])),
    messages: new Map(messages.map((r) => [r.id as string, { ...r }])),
    keys: new Map(keys.map((r) => [r.key as string, { ...r }])),
  };
}

const inFlight = (s: Snapshot) => [...s.messages.values()].some((m) => m.status === "queued" || m.status === "in_progress");

/** The state once every reply has ended and the writes that follow an end have landed. */
async function settledSnapshot(label: string): Promise<Snapshot> {
  const deadline = Date.now() + 15_000;
  let last = await snapshot();
  for (;;) {
    await new Promise((r) => setTimeout(r, inFlight(last) ? 10 : 25));
    const next = await snapshot();
    if (!inFlight(next) && isDeepStrictEqual(next, last)) return next;
    if (Date.now() > deadline) throw new Error(`${label}: replies still in flight after 15 s`);
    last = next;
  }
}

interface RowDiff {
  added: Row[];
  removed: Row[];
  changed: { before: Row; after: Row }[];
}
function diffRows(before: Map<string, Row>, after: Map<string, Row>): RowDiff {
  const added = [...after.entries()].filter(([id]) => !before.has(id)).map(([, r]) => r);
  const removed = [...before.entries()].filter(([id]) => !after.has(id)).map(([, r]) => r);
  const changed = [...after.entries()]
    .filter(([id, r]) => before.has(id) && !isDeepStrictEqual(before.get(id), r))
    .map(([id, r]) => ({ before: before.get(id)!, after: r }));
  return { added, removed, changed };
}
const NO_CHANGE: RowDiff = { added: [], removed: [], changed: [] };

/** A JSON value as jsonb gives it back: -0 is 0 (and nothing else may differ). */
function asStored(v: unknown): unknown {
  if (typeof v === "number") return Object.is(v, -0) ? 0 : v;
  if (Array.isArray(v)) return v.map(asStored);
  if (isObject(v)) return objectOf(Object.entries(v).map(([k, x]) => [k, asStored(x)]));
  return v;
}

/** What the service reads from these bytes: strict UTF-8 (a BOM dropped), then JSON. Null if neither is valid. */
function parseAsJson(bytes: Uint8Array): { value: unknown } | null {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
  try {
    return { value: JSON.parse(text) };
  } catch {
    return null;
  }
}

const isJsonMediaType = (contentType: string | undefined) =>
  /^application\/([\w.-]+\+)?json$/i.test((contentType ?? "").split(";")[0]!.trim());

/** The body a correct service would act on: the JSON sent, or `{}` for no body (unless it was said to be JSON). */
function bodySeen(probe: Probe): unknown {
  if (!probe.bytes || probe.bytes.length === 0) return isJsonMediaType(probe.headers["content-type"]) ? undefined : {};
  return parseAsJson(probe.bytes)?.value;
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

function expectErrorShape(probe: Probe, answer: Answer) {
  const what = `${probe.label} → ${answer.status} ${answer.text.slice(0, 300)}`;
  expect(answer.headers.get("content-type"), what).toMatch(/^application\/json/);
  expect(Object.keys(answer.json ?? {}), what).toEqual(["error"]);
  const error = answer.json.error;
  expect(Object.keys(error).sort(), what).toEqual(["code", "message", "param", "type"]);
  expect(typeof error.message === "string" && error.message.length > 0, what).toBe(true);
  expect(typeof error.type === "string" && error.type.length > 0, what).toBe(true);
  expect(error.param === null || typeof error.param === "string", what).toBe(true);
  expect(error.code === null || typeof error.code === "string", what).toBe(true);
  // A stack trace would show as "\n    at fn (file:line)" in the raw text.
  expect(answer.text, what).not.toMatch(/\n\s+at \S/);
  if (answer.status === 401) expect(answer.headers.get("www-authenticate"), what).toMatch(/^Bearer /);
  if (answer.status === 413) expect(error.code, what).toBe("request_too_large");
}

function expectAnswerShape(probe: Probe, answer: Answer) {
  const what = `${probe.label} → ${answer.status} ${answer.text.slice(0, 300)}`;
  expect(answer.status, what).toBeLessThan(500);
  expect(answer.status, what).toBeGreaterThanOrEqual(200);

  const echoed = answer.headers.get("x-request-id");
  expect(echoed, what).toMatch(REQUEST_ID);
  const sent = probe.headers["x-request-id"]?.replace(HTTP_WHITESPACE, "");
  if (sent !== undefined) {
    if (REQUEST_ID.test(sent)) expect(echoed, what).toBe(sent);
    else expect(echoed, what).not.toBe(sent);
  }

  if (answer.status >= 400) return expectErrorShape(probe, answer);
  const type = answer.headers.get("content-type") ?? "";
  if (answer.events) {
    const last = answer.events.at(-1);
    const chat = probe.plan.route === "statelessCompletion" || probe.plan.route === "boundCompletion";
    if (chat) expect(last?.data, `${what}: a completion stream ends with [DONE]`).toBe("[DONE]");
    // Resumed from its last event (or beyond it), a finished reply's stream has nothing left to send.
    else if (last) expect(last.event, `${what}: a reply's event stream ends with done`).toBe("done");
    else expect(probe.headers["last-event-id"] ?? probe.url.includes("last_event_id="), `${what}: an empty event stream`).toBeTruthy();
  } else expect(type, what).toMatch(/^application\/json/);
}

/** Checks one answered request against the stored change it caused. */
function expectStoredChange(probe: Probe, answer: Answer, before: Snapshot, after: Snapshot) {
  const what = `${probe.label} → ${answer.status} ${answer.text.slice(0, 300)}`;
  const conversations = diffRows(before.conversations, after.conversations);
  const messages = diffRows(before.messages, after.messages);
  const keys = diffRows(before.keys, after.keys);
  const ok = answer.status >= 200 && answer.status < 300;
  if (!ok) {
    expect({ conversations, messages, keys }, `${what}: refused, yet stored something`).toEqual({
      conversations: NO_CHANGE,
      messages: NO_CHANGE,
      keys: NO_CHANGE,
    });
    return;
  }

  const route = probe.plan.route;
  const creating = route === "createConversation" || route === "appendMessage" || route === "statelessCompletion" || route === "boundCompletion";
  const key = probe.headers["idempotency-key"]?.replace(HTTP_WHITESPACE, "");
  if (answer.headers.get("idempotent-replayed") === "true") {
    expect(creating && key !== undefined, what).toBe(true);
    expect({ conversations, messages, keys }, `${what}: a replay stores nothing`).toEqual({ conversations: NO_CHANGE, messages: NO_CHANGE, keys: NO_CHANGE });
    return;
  }
  if (creating && key !== undefined) {
    expect(keys.added.map((k) => k.key), `${what}: the key is recorded`).toEqual([key]);
    expect(keys.added[0]?.result, what).not.toBeNull();
    expect(keys.removed.length + keys.changed.length, what).toBe(0);
  } else expect(keys, what).toEqual(NO_CHANGE);

  const body = bodySeen(probe) as any;
  if ((BODY_ROUTES as readonly Route[]).includes(route)) {
    expect(body, `${what}: accepted a body it cannot have read as JSON`).toBeDefined();
  }
  const sortedAdded = [...messages.added].sort((a, b) => a.seq - b.seq);

  switch (route) {
    case "createConversation": {
      expect(answer.status, what).toBe(201);
      const res = answer.json;
      expect(conversations.added.map((c) => c.id), what).toEqual([res.id]);
      expect([conversations.removed, conversations.changed, messages.removed, messages.changed], what).toEqual([[], [], [], []]);
      const row = conversations.added[0]!;
      const imported: any[] = body.messages ?? [];
      expect(row, what).toMatchObject({
        title: body.title ?? null,
        system: body.system ?? null,
        model: body.model ?? MODEL,
        message_count: imported.length,
        last_seq: imported.length,
      });
      expect(row.params, `${what}: params stored as sent`).toEqual(asStored(body.params ?? {}));
      expect(row.metadata, `${what}: metadata stored as sent`).toEqual(asStored(body.metadata ?? {}));
      expect(
        sortedAdded.map((m) => [m.conversation_id, m.seq, m.role, m.content, m.status, m.metadata]),
        `${what}: the imported history stored as sent`,
      ).toEqual(imported.map((m, i) => [row.id, i + 1, m.role, m.content, "completed", asStored(m.metadata ?? {})]));
      expect(res, what).toMatchObject({ id: row.id, title: row.title, system: row.system, model: row.model, message_count: imported.length });
      expect([res.params, res.metadata], what).toEqual([row.params, row.metadata]);
      return;
    }
    case "updateConversation": {
      expect(answer.status, what).toBe(200);
      const id = probe.conversationId!;
      expect(id, what).not.toBeNull();
      expect([conversations.added, conversations.removed, messages], what).toEqual([[], [], NO_CHANGE]);
      expect(conversations.changed.every((c) => c.after.id === id), what).toBe(true);
      const was = before.conversations.get(id)!;
      const now = after.conversations.get(id)!;
      const given = (field: string) => Object.hasOwn(body, field);
      expect(now, what).toMatchObject({
        title: given("title") ? body.title : was.title,
        system: given("system") ? body.system : was.system,
        model: given("model") ? body.model : was.model,
        message_count: was.message_count,
        last_seq: was.last_seq,
        created_at: was.created_at,
      });
      expect(now.params, `${what}: params stored as sent`).toEqual(given("params") ? asStored(body.params) : was.params);
      expect(now.metadata, `${what}: metadata stored as sent`).toEqual(given("metadata") ? asStored(body.metadata) : was.metadata);
      expect(answer.json, what).toMatchObject({ id, title: now.title, system: now.system, model: now.model, params: now.params, metadata: now.metadata });
      return;
    }
    case "deleteConversation": {
      const id = probe.conversationId!;
      expect(answer.json, what).toEqual({ id, object: "conversation.deleted", deleted: true });
      expect(conversations, what).toEqual({ added: [], removed: [before.conversations.get(id)], changed: [] });
      const itsMessages = [...before.messages.values()].filter((m) => m.conversation_id === id);
      expect(messages, what).toEqual({ added: [], removed: itsMessages, changed: [] });
      return;
    }
    case "appendMessage": {
      const id = probe.conversationId!;
      expect(id, what).not.toBeNull();
      const role = body.role ?? "user";
      const wantsReply = role === "user" && body.reply !== false;
      const was = before.conversations.get(id)!;
      const n = wantsReply ? 2 : 1;
      expect([conversations.added, conversations.removed, conversations.changed.map((c) => c.after.id)], what).toEqual([[], [], [id]]);
      expect(after.conversations.get(id), what).toMatchObject({ message_count: was.message_count + n, last_seq: was.last_seq + n });
      expect([messages.removed, messages.changed], `${what}: earlier messages untouched`).toEqual([[], []]);
      expect(sortedAdded.map((m) => [m.conversation_id, m.seq, m.role]), what).toEqual(
        [[id, was.last_seq + 1, role], ...(wantsReply ? [[id, was.last_seq + 2, "assistant"]] : [])],
      );
      const [message, reply] = sortedAdded as [Row, Row | undefined];
      expect([message.content, message.status, message.metadata], `${what}: the message stored as sent`).toEqual([
        body.content,
        "completed",
        asStored(body.metadata ?? {}),
      ]);
      if (reply) {
        expect(reply.status, `${what}: the reply completed`).toBe("completed");
        expect(reply.params, `${what}: the turn's params stored as sent`).toEqual(body.params === undefined ? null : asStored(body.params));
      }
      if (answer.events) {
        expect(JSON.parse(answer.events[0]!.data).id, what).toBe(message.id);
        const text = answer.events.filter((e) => e.event === "message.delta").map((e) => JSON.parse(e.data).delta.content).join("");
        expect(text, `${what}: the streamed reply is the stored one`).toBe(reply?.content);
      } else {
        expect(answer.status, what).toBe(wantsReply && body.wait === false ? 202 : 201);
        expect(answer.json.message, what).toMatchObject({ id: message.id, content: message.content, role, seq: message.seq });
        if (!reply) expect(answer.json.reply, what).toBeNull();
        else if (body.wait === false) expect(answer.json.reply, what).toMatchObject({ id: reply.id, status: "queued" });
        else expect(answer.json.reply, what).toMatchObject({ id: reply.id, status: "completed", content: reply.content });
      }
      return;
    }
    case "boundCompletion": {
      const id = probe.conversationId!;
      expect(id, what).not.toBeNull();
      const given: any[] = body.messages;
      const was = before.conversations.get(id)!;
      expect([conversations.added, conversations.removed, conversations.changed.map((c) => c.after.id)], what).toEqual([[], [], [id]]);
      expect([messages.removed, messages.changed], `${what}: earlier messages untouched`).toEqual([[], []]);
      // A message's stored text: parts' texts joined (the parts themselves are kept apart).
      const contentOf = (c: unknown) => (typeof c === "string" ? c : (c as any[]).filter((p) => p.type === "text").map((p) => p.text).join(""));
      expect(
        sortedAdded.map((m) => [m.conversation_id, m.seq, m.role, m.status === "completed" ? m.content : m.status]),
        `${what}: the new messages stored as sent`,
      ).toEqual([
        ...given.map((m, i) => [id, was.last_seq + 1 + i, m.role, contentOf(m.content)]),
        [id, was.last_seq + given.length + 1, "assistant", sortedAdded.at(-1)?.content],
      ]);
      const reply = sortedAdded.at(-1)!;
      const NOT_SAMPLING = new Set(["model", "messages", "stream", "stream_options", "n"]);
      const sampling = objectOf(Object.entries(body).filter(([k]) => !NOT_SAMPLING.has(k)));
      expect([reply.model, reply.params], `${what}: the reply's model and params stored as sent`).toEqual([body.model, asStored(sampling)]);
      expect(answer.headers.get("x-parley-message-id"), what).toBe(reply.id);
      if (answer.events) {
        const chunks = answer.events.filter((e) => e.data !== "[DONE]").map((e) => JSON.parse(e.data));
        const text = chunks.map((c) => c.choices?.[0]?.delta?.content ?? "").join("");
        expect(text, `${what}: the streamed reply is the stored one`).toBe(reply.content);
      } else expect(answer.json.choices[0].message.content, `${what}: the answer is the stored reply`).toBe(reply.content);
      return;
    }
    case "statelessCompletion":
    case "cancelReply":
    case "getConversation":
    case "listConversations":
    case "getMessage":
    case "listMessages":
    case "followEvents":
    case "listModels": {
      expect({ conversations, messages }, `${what}: stores nothing`).toEqual({ conversations: NO_CHANGE, messages: NO_CHANGE });
      if (route === "getConversation") {
        const row = after.conversations.get(probe.conversationId!)!;
        expect(answer.json, what).toMatchObject({ id: row.id, title: row.title, system: row.system, params: row.params, metadata: row.metadata });
      }
      if (route === "getMessage" || route === "cancelReply") {
        const row = after.messages.get(probe.messageId!)!;
        expect(answer.json, what).toMatchObject({ id: row.id, content: row.content, status: row.status, metadata: row.metadata });
      }
      if (route === "listConversations" || route === "listMessages") {
        expect(answer.json, what).toMatchObject({ object: "list", has_more: expect.any(Boolean) });
        expect(answer.json.data.length, what).toBeLessThanOrEqual(MAX_PAGE_LIMIT);
        const stored = route === "listConversations" ? after.conversations : after.messages;
        for (const item of answer.json.data) expect(stored.has(item.id), `${what}: lists only what is stored`).toBe(true);
      }
      return;
    }
  }
}

/** Sends one planned request and checks the answer and the stored change; returns the answer for further checks. */
async function sendAndCheck(plan: Plan): Promise<{ probe: Probe; answer: Answer }> {
  const p = await realize(plan);
  const before = await snapshot();
  const answer = await send(p);
  const mayHaveStartedReply = answer.status < 300 && (plan.route === "appendMessage" || plan.route === "boundCompletion");
  const after = mayHaveStartedReply ? await settledSnapshot(p.label) : await snapshot();
  expectAnswerShape(p, answer);
  expectStoredChange(p, answer, before, after);
  return { probe: p, answer };
}

const RUNS_SCALE = Number(process.env.FUZZ_RUNS_SCALE ?? 1);
const runs = (numRuns: number, examples: Plan[] = []) => ({
  numRuns: Math.max(1, Math.round(numRuns * RUNS_SCALE)),
  examples: examples.map((e) => [e] as [Plan]),
});

// ---------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------

beforeAll(async () => {
  const history = await ctx.api.post("/conversations", {
    system: "Be brief.",
    params: { max_tokens: 4 },
    messages: [
      { role: "user", content: "Hi" },
      { role: "assistant", content: "Hello!" },
    ],
  });
  const replied = await ctx.api.post("/conversations", { params: { max_tokens: 5 } });
  const turn = await ctx.api.post(`/conversations/${replied.body.id}/messages`, { content: "hello" });
  expect(turn.status).toBe(201);
  expect(turn.body.reply.status).toBe("completed");
  const events = await fetch(`${v1()}/conversations/${replied.body.id}/messages/${turn.body.reply.id}/events`, {
    headers: { authorization: `Bearer ${TEST_API_KEY}` },
  });
  const { events: replayed } = await readEvents(events);
  const historyList = await ctx.api.get(`/conversations/${history.body.id}/messages`);
  fixtures = {
    history: { id: history.body.id, imported: historyList.body.data[1].id },
    replied: { id: replied.body.id, user: turn.body.message.id, reply: turn.body.reply.id, eventIds: replayed.map((e) => e.id!).filter(Boolean) },
  };
  expect(fixtures.replied.eventIds.length).toBeGreaterThan(3);
});

describe("hostile input, fuzzed", () => {
  it("answers random JSON bodies on every endpoint without a 5xx, in the error shape, storing only what it accepted", async () => {
    const fieldsOrAnything = fc.oneof(
      fc.jsonValue({ maxDepth: 3, stringUnit: hostileChar }),
      dictionary(fieldName, fc.jsonValue({ maxDepth: 2, stringUnit: hostileChar }), 5),
    );
    const plan = fc.constantFrom(...BODY_ROUTES, "cancelReply" as const, "deleteConversation" as const).chain((route) => planFor(route, jsonBody(fieldsOrAnything)));
    await fc.assert(
      fc.asyncProperty(plan, async (p) => void (await sendAndCheck(p))),
      runs(150, [
        { ...defaultPlan, route: "createConversation", body: { kind: "json", value: [] } },
        { ...defaultPlan, route: "appendMessage", body: { kind: "json", value: null } },
        { ...defaultPlan, route: "statelessCompletion", body: { kind: "json", value: { messages: "hi" } } },
      ]),
    );
  }, RUN_TIMEOUT_MS);

  it("refuses, or stores exactly, valid bodies mutated: dropped fields, wrong types, huge strings, lone surrogates, NUL, deep nesting, odd numbers", async () => {
    const plan = fc.constantFrom(...BODY_ROUTES).chain((route) =>
      planFor(
        route,
        fc.tuple(validBody(route), fc.array(mutation, { minLength: 1, maxLength: 3 })).map(([body, ms]) => ({ kind: "json" as const, value: mutate(body, ms) })),
      ),
    );
    const create = (value: unknown): Plan => ({ ...defaultPlan, route: "createConversation", body: { kind: "json", value } });
    const append = (value: unknown): Plan => ({ ...defaultPlan, route: "appendMessage", body: { kind: "json", value } });
    const bound = (extra: Record<string, unknown>): Plan => ({
      ...defaultPlan,
      route: "boundCompletion",
      body: { kind: "json", value: { model: MODEL, max_tokens: 2, messages: [{ role: "user", content: "hi" }], ...extra } },
    });
    await fc.assert(
      fc.asyncProperty(plan, async (p) => void (await sendAndCheck(p))),
      runs(300, [
        create({ title: "\uD800" }),
        create({ metadata: objectOf([["__proto__", "x"]]) }),
        create({ params: objectOf([["__proto__", { max_tokens: 1 }]]) }),
        create({ params: { t: new RawJson("1e309") } }),
        create({ params: { t: new RawJson("-0") } }),
        create({ system: "x".repeat(MAX_CONTENT_CHARS + 1) }),
        create({ messages: [{ role: "user", content: "\u0000" }] }),
        create({ params: { deep: new RawJson("[".repeat(40) + "]".repeat(40)) } }),
        append({ content: "ok", reply: false, params: { a: new RawJson("[".repeat(3000) + "]".repeat(3000)) } }),
        append({ content: "a\uDC00b", reply: false }),
        bound({ messages: [{ role: "user", content: [{ type: "text", text: "\uD800" }] }] }),
        bound({ user: "\uD800" }),
        bound({ user: "\u0000" }),
        bound({ temperature: new RawJson("1e309") }),
        bound({ logit_bias: new RawJson("1e309") }),
        bound({ "\uD800": "x" }),
        bound({ "a\u0000": 1 }),
      ]),
    );
  }, RUN_TIMEOUT_MS);

  it("stores unicode text exactly as sent, and refuses text with lone surrogates or NUL with a 400", async () => {
    const routes = ["createConversation", "updateConversation", "appendMessage", "boundCompletion"] as const;
    const plan: fc.Arbitrary<Plan> = fc.constantFrom(...routes).chain((route) =>
      fc.record({
        route: fc.constant(route),
        // Our conversations as they are: the point here is the text, not the path.
        conv: fc.constantFrom<ConvRef>({ ours: "history" }, { ours: "replied" }),
        msg: fc.constant<MsgRef>({ ours: "reply" }),
        query: fc.constant<[string, string][]>([]),
        headers: fc.constant({}),
        body: jsonBody(validBody(route, hostileText)),
      }),
    );
    await fc.assert(
      fc.asyncProperty(plan, async (p) => {
        const { answer, probe: sent } = await sendAndCheck(p);
        const value = (p.body as { value: unknown }).value;
        // Every string in these bodies is stored (the chat message `name` aside), keys included.
        const strings: string[] = [];
        const keys: string[] = [];
        const walk = (v: unknown, key?: string) => {
          if (typeof v === "string" && key !== "name") strings.push(v);
          else if (Array.isArray(v)) v.forEach((x) => walk(x));
          else if (isObject(v)) for (const [k, x] of Object.entries(v)) (keys.push(k), walk(x, k));
        };
        walk(value);
        strings.push(...keys);
        const what = `${sent.label} → ${answer.status} ${answer.text.slice(0, 300)}`;
        if (!strings.every(isStorable)) expect(answer.status, `${what}: a lone surrogate or NUL is refused`).toBe(400);
        // zod would drop a `__proto__` key (or take it as the prototype): refused rather than lost.
        else if (keys.includes("__proto__")) expect(answer.status, `${what}: a __proto__ key is refused`).toBe(400);
        else expect(answer.status, `${what}: storable text is taken`).toBeLessThan(300);
      }),
      runs(150),
    );
  }, RUN_TIMEOUT_MS);

  it("refuses broken JSON, bodies that are not UTF-8, wrong Content-Types and oversized bodies, storing nothing", async () => {
    const bodyRoute = fc.constantFrom(...BODY_ROUTES);
    const valid = bodyRoute.chain((route) => validBody(route).map((value) => ({ route, value })));
    const body: fc.Arbitrary<{ route: BodyRoute; body: Body }> = fc.oneof(
      fc.tuple(bodyRoute, fc.constantFrom(...BROKEN_JSON)).map(([route, text]) => ({ route, body: { kind: "text" as const, text } })),
      // A valid body cut short.
      fc.tuple(valid, fc.nat()).map(([{ route, value }, cut]) => {
        const text = toJsonText(value);
        return { route, body: { kind: "text" as const, text: text.slice(0, cut % Math.max(text.length, 1)) } };
      }),
      // Invalid UTF-8 inside a string of a valid body.
      fc.tuple(valid, fc.constantFrom(...BAD_UTF8), fc.nat()).map(([{ route, value }, bad, at]) => {
        const text = toJsonText(value);
        const quotes = [...text.matchAll(/"/g)].map((m) => m.index! + 1);
        const pos = quotes[at % Math.max(quotes.length, 1)] ?? 0;
        const bytes = [...Buffer.from(text.slice(0, pos), "utf8"), ...bad, ...Buffer.from(text.slice(pos), "utf8")];
        return { route, body: { kind: "bytes" as const, bytes } };
      }),
      // A valid body under another Content-Type (or none).
      fc.tuple(valid, fc.oneof(fc.constantFrom(...CONTENT_TYPES), headerText(30))).map(([{ route, value }, contentType]) => ({
        route,
        body: { kind: "json" as const, value, contentType },
      })),
      // A body past MAX_BODY_BYTES, with a Content-Length or chunked.
      fc.tuple(valid, fc.boolean()).map(([{ route, value }, chunked]) => ({
        route,
        body: { kind: "json" as const, value: { ...(value as object), padding: "x".repeat(MAX_BODY_BYTES) }, chunked },
      })),
      // No body at all, with or without a Content-Type.
      fc.tuple(bodyRoute, fc.option(fc.constantFrom(...CONTENT_TYPES), { nil: undefined })).map(([route, contentType]) => ({
        route,
        body: contentType === undefined ? noBody : { kind: "none" as const, contentType },
      })),
    );
    const plan = body.chain(({ route, body }) => planFor(route, fc.constant(body)));
    await fc.assert(
      fc.asyncProperty(plan, async (p) => {
        const { probe: sent, answer } = await sendAndCheck(p);
        const what = `${sent.label} → ${answer.status} ${answer.text.slice(0, 300)}`;
        if (sent.bytes && sent.bytes.length > MAX_BODY_BYTES) expect(answer.status, what).toBe(413);
        else if (sent.bytes && sent.bytes.length > 0 && !parseAsJson(sent.bytes)) expect(answer.status, `${what}: not JSON (or not UTF-8)`).toBe(400);
      }),
      runs(150, [
        { ...defaultPlan, route: "createConversation", body: { kind: "bytes", bytes: [...Buffer.from('{"title":"a'), 0xed, 0xa0, 0x80, ...Buffer.from('b"}')] } },
        { ...defaultPlan, route: "appendMessage", body: { kind: "bytes", bytes: [...Buffer.from('{"reply":false,"content":"'), 0xff, ...Buffer.from('"}')] } },
        { ...defaultPlan, route: "createConversation", body: { kind: "json", value: { title: "t" }, contentType: "text/plain" } },
        { ...defaultPlan, route: "createConversation", body: { kind: "json", value: { title: "t" }, contentType: "application/x_y+json" } },
        { ...defaultPlan, route: "createConversation", body: { kind: "text", text: "\uFEFF{\"title\":\"bom\"}" } },
        { ...defaultPlan, route: "updateConversation", body: { kind: "json", value: { title: "x".repeat(MAX_BODY_BYTES) }, chunked: true } },
      ]),
    );
  }, RUN_TIMEOUT_MS);

  it("answers bad Authorization, x-request-id, Idempotency-Key and Content-Type headers as documented", async () => {
    const plan = fc
      .tuple(
        validPlan(),
        fc.record(
          { authorization, "x-request-id": requestId, "idempotency-key": idempotencyKey, "content-type": fc.constantFrom(...CONTENT_TYPES) },
          { requiredKeys: [] },
        ),
      )
      .map(([p, headers]): Plan => ({ ...p, headers: headers as Record<string, string>, noAuth: headers.authorization !== undefined }));
    await fc.assert(
      fc.asyncProperty(plan, async (p) => {
        const { probe: sent, answer } = await sendAndCheck(p);
        const what = `${sent.label} → ${answer.status} ${answer.text.slice(0, 300)}`;
        const auth = p.headers.authorization;
        if (auth !== undefined && !isOurKey(auth)) {
          expect(answer.status, `${what}: not our key`).toBe(401);
          expect(answer.json.error.code, what).toMatch(/^(missing|invalid)_api_key$/);
          return;
        }
        expect(answer.status, `${what}: our key`).not.toBe(401);
        const key = p.headers["idempotency-key"]?.replace(HTTP_WHITESPACE, "");
        if (answer.status === 400 && answer.json.error.param === "Idempotency-Key") {
          expect(key !== undefined && !IDEMPOTENCY_KEY.test(key), `${what}: a well-formed key refused`).toBe(true);
        }
      }),
      runs(200),
    );
  }, RUN_TIMEOUT_MS);

  it("answers bad ids, query parameters and Last-Event-IDs on every endpoint without a 5xx", async () => {
    const plan = fc.tuple(validPlan(), query, fc.option(lastEventId(fixtures), { nil: undefined })).map(
      // A header carries Latin-1 only: other text goes as its UTF-8 bytes.
      ([p, q, leid]): Plan => ({ ...p, query: q, headers: leid === undefined ? {} : { "last-event-id": /^[\0-\xff]*$/.test(leid) ? leid : asHeaderBytes(leid) } }),
    );
    const followFrom = (leid: string): Plan => ({ ...defaultPlan, conv: { ours: "replied" }, route: "followEvents", headers: { "last-event-id": leid } });
    await fc.assert(
      fc.asyncProperty(plan, async (p) => {
        const { probe: sent, answer } = await sendAndCheck(p);
        const what = `${sent.label} → ${answer.status} ${answer.text.slice(0, 300)}`;
        if (p.route === "followEvents" && sent.conversationId === fixtures.replied.id && sent.messageId === fixtures.replied.reply) {
          const header = p.headers["last-event-id"]?.replace(HTTP_WHITESPACE, "");
          const fromQuery = p.query.filter(([k]) => k === "last_event_id").map(([, v]) => decodeURIComponentSafe(v));
          // The header wins over the query parameter; a repeated parameter is no id at all.
          const resumeFrom = header ?? fromQuery[0];
          if (fromQuery.length > 1 || (resumeFrom !== undefined && !isStreamId(resumeFrom))) {
            expect(answer.status, `${what}: a malformed Last-Event-ID`).toBe(400);
          } else {
            expect(answer.status, what).toBe(200);
            const after = fixtures.replied.eventIds.filter((id) => resumeFrom === undefined || compareIds(id, resumeFrom) > 0);
            expect(answer.events?.map((e) => e.id), `${what}: exactly the events after it`).toEqual(after);
          }
        }
        if ((p.route === "listConversations" || p.route === "listMessages") && answer.status === 200) {
          const limits = p.query.filter(([k]) => k === "limit").map(([, v]) => Number(decodeURIComponentSafe(v)));
          expect(limits.length <= 1 && limits.every((n) => Number.isInteger(n) && n >= 1 && n <= MAX_PAGE_LIMIT), `${what}: a bad limit taken`).toBe(true);
          expect(answer.json.data.length, what).toBeLessThanOrEqual(limits[0] ?? 20);
        }
      }),
      runs(200, [
        followFrom(fixtures.replied.eventIds.at(-1)!),
        followFrom("99999999999999999999999-0"),
        followFrom(`${Date.now() + 86_400_000}-0`),
        { ...defaultPlan, route: "listConversations", query: [["after", "%00"]] },
        { ...defaultPlan, route: "listMessages", query: [["before", "%ED%A0%80"]] },
      ]),
    );
  }, RUN_TIMEOUT_MS);
});

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** Orders stream ids `ms-seq` exactly (they may be larger than a double holds). */
function compareIds(a: string, b: string): number {
  const [am = 0n, as = 0n] = a.split("-").map((x) => BigInt(x));
  const [bm = 0n, bs = 0n] = b.split("-").map((x) => BigInt(x));
  return am !== bm ? (am > bm ? 1 : -1) : as === bs ? 0 : as > bs ? 1 : -1;
}
