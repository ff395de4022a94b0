import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newConversationId, newMessageId } from "../../src/domain/ids.ts";
import { apiClient, authedFetch } from "../support/http.ts";
import { seedApiKeyFor } from "../support/keys.ts";
import { useTestService } from "../support/service.ts";

/**
 * Tenant B holding tenant A's ids learns nothing from them: on every endpoint
 * an id of another tenant's object answers exactly as a well-formed id that
 * does not exist, and A's rows do not change. One reply slot per tenant, so a
 * slot that B's refused requests failed to give back shows up as a 429.
 */
const ctx = useTestService({ MAX_CONCURRENT_REPLIES: 1 });

const TENANT_A = "tenant-a";
const TENANT_B = "tenant-b";
const MODEL = "parley-sim-1";

/** A's objects, or stand-ins of the same shape that nobody has. */
interface Ids {
  conv: string;
  userMsg: string;
  reply: string;
  busyConv: string;
  busyReply: string;
}

interface Probe {
  method: "GET" | "POST" | "PATCH" | "DELETE";
  path: string;
  body?: unknown;
  headers?: Record<string, string>;
}

interface Answer {
  status: number;
  contentType: string | null;
  headerNames: string[];
  body: unknown;
}

let a: ReturnType<typeof apiClient>;
let b: ReturnType<typeof apiClient>;
let keyB: string;
let ids: Ids;
/** B's own conversation and its finished reply, for requests that mix B's ids with A's. */
let own: { conv: string; reply: string };
const A_KEYS = { create: "a-create-1", append: "a-append-1", complete: "a-complete-1", stateless: "a-stateless-1" };
const A_CREATE_BODY = { title: "A's plans", system: "You are A's assistant.", metadata: { owner: "a" } };
const A_APPEND_BODY = { content: "What should A see in Lisbon?" };
const A_COMPLETE_BODY = { model: MODEL, messages: [{ role: "user", content: "And in Porto?" }] };

/** Retries a request that starts a reply while the tenant's one slot is still being given back by the worker. */
async function whenSlotFree<T extends { status: number }>(request: () => Promise<T>, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await request();
    if (res.status !== 429 || Date.now() > deadline) return res;
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** One request as tenant B, its body parsed (or named, if it is not JSON); never waits on a stream. */
async function send(probe: Probe, apiKey = keyB): Promise<Answer> {
  const res = await authedFetch(
    `${ctx.service.url}/v1${probe.path}`,
    {
      method: probe.method,
      headers: { ...(probe.body === undefined ? {} : { "content-type": "application/json" }), ...probe.headers },
      body: probe.body === undefined ? undefined : JSON.stringify(probe.body),
      signal: AbortSignal.timeout(5000),
    },
    apiKey,
  );
  const contentType = res.headers.get("content-type");
  let body: unknown;
  if (contentType?.includes("application/json")) {
    body = await res.json();
  } else {
    await res.body?.cancel();
    body = `<${contentType}>`;
  }
  return { status: res.status, contentType, headerNames: [...res.headers.keys()].sort(), body };
}

/** The answer with every id of `named` replaced by its name, so two answers about different ids compare. */
function withIdsNamed(answer: Answer, named: Ids): Answer {
  let text = JSON.stringify(answer.body);
  for (const [name, id] of Object.entries(named)) text = text.replaceAll(id, `<${name}>`);
  return { ...answer, body: JSON.parse(text) };
}

const tenantRows = async (tenant: string) => {
  const sql = ctx.service.sql;
  return {
    conversations: await sql`select * from conversations where tenant_id = ${tenant} order by id`,
    messages: await sql`select * from messages where tenant_id = ${tenant} order by id`,
    idempotencyKeys: await sql`select * from idempotency_keys where tenant_id = ${tenant} order by key`,
  };
};

beforeAll(async () => {
  const base = `${ctx.service.url}/v1`;
  const sql = ctx.service.sql;
  const keyA = await seedApiKeyFor(sql, TENANT_A);
  keyB = await seedApiKeyFor(sql, TENANT_B);
  a = apiClient(base, keyA);
  b = apiClient(base, keyB);

  const { body: convB } = await b.post("/conversations", { title: "B's own" });
  const turnB = await b.post(`/conversations/${convB.id}/messages`, { content: "B asks" });
  expect(turnB.status).toBe(201);
  own = { conv: convB.id, reply: turnB.body.reply.id };

  // A: a conversation with a finished turn, each step under an Idempotency-Key B will reuse.
  const convA = await a.post("/conversations", A_CREATE_BODY, { "idempotency-key": A_KEYS.create });
  expect(convA.status).toBe(201);
  const turnA = await whenSlotFree(() =>
    a.post(`/conversations/${convA.body.id}/messages`, A_APPEND_BODY, { "idempotency-key": A_KEYS.append }),
  );
  expect(turnA.status).toBe(201);
  expect(turnA.body.reply.status).toBe("completed");
  const completion = await whenSlotFree(() =>
    a.post(`/conversations/${convA.body.id}/chat/completions`, A_COMPLETE_BODY, { "idempotency-key": A_KEYS.complete }),
  );
  expect(completion.status).toBe(200);

  // A: a second conversation whose reply stays in flight (the simulator waits 10 minutes for its first token).
  const { body: busyConv } = await a.post("/conversations", { title: "A's busy one" });
  const busy = await whenSlotFree(() =>
    a.post(`/conversations/${busyConv.id}/messages`, {
      content: "Take your time.",
      wait: false,
      params: { simulate: { ttft_ms: 600_000 } },
    }),
  );
  expect(busy.status).toBe(202);
  // Wait until the worker has taken it, so its row does not move while the matrix runs.
  for (let i = 0; ; i++) {
    const [row] = await sql`select status from messages where id = ${busy.body.reply.id}`;
    if (row?.status === "in_progress") break;
    if (i > 200) throw new Error(`the busy reply stayed ${row?.status}`);
    await new Promise((r) => setTimeout(r, 25));
  }

  ids = {
    conv: convA.body.id,
    userMsg: turnA.body.message.id,
    reply: turnA.body.reply.id,
    busyConv: busyConv.id,
    busyReply: busy.body.reply.id,
  };
});

const LAST_EVENT_ID = "1764045600123-0";
const served = { model: MODEL, messages: [{ role: "user", content: "B tries" }] };

/** Every endpoint that takes an id, as B, with A's ids (or the stand-ins) in it. */
const matrix: { name: string; probe: (x: Ids) => Probe }[] = [
  // read
  { name: "GET a conversation", probe: (x) => ({ method: "GET", path: `/conversations/${x.conv}` }) },
  { name: "GET a conversation with a reply in flight", probe: (x) => ({ method: "GET", path: `/conversations/${x.busyConv}` }) },
  { name: "GET the history", probe: (x) => ({ method: "GET", path: `/conversations/${x.conv}/messages` }) },
  {
    name: "GET the history paged from one of its messages",
    probe: (x) => ({ method: "GET", path: `/conversations/${x.conv}/messages?order=desc&after=${x.userMsg}` }),
  },
  { name: "GET a user message", probe: (x) => ({ method: "GET", path: `/conversations/${x.conv}/messages/${x.userMsg}` }) },
  { name: "GET a finished reply", probe: (x) => ({ method: "GET", path: `/conversations/${x.conv}/messages/${x.reply}` }) },
  {
    name: "GET a reply in flight",
    probe: (x) => ({ method: "GET", path: `/conversations/${x.busyConv}/messages/${x.busyReply}` }),
  },
  // write
  {
    name: "PATCH a conversation",
    probe: (x) => ({ method: "PATCH", path: `/conversations/${x.conv}`, body: { title: "B was here", metadata: { owner: "b" } } }),
  },
  {
    name: "PATCH the model of a conversation with a reply in flight",
    probe: (x) => ({ method: "PATCH", path: `/conversations/${x.busyConv}`, body: { model: MODEL, system: "Obey B." } }),
  },
  {
    name: "regenerate a conversation's last reply",
    probe: (x) => ({ method: "POST", path: `/conversations/${x.conv}/messages/${x.reply}/regenerate`, body: {} }),
  },
  {
    name: "regenerate a reply in flight (404, not 409 busy)",
    probe: (x) => ({ method: "POST", path: `/conversations/${x.busyConv}/messages/${x.busyReply}/regenerate`, body: { wait: false } }),
  },
  {
    name: "fork a conversation at its reply",
    probe: (x) => ({ method: "POST", path: `/conversations/${x.conv}/fork`, body: { message_id: x.reply } }),
  },
  {
    name: "fork a conversation with a reply in flight at that reply (404, not 400 in flight)",
    probe: (x) => ({ method: "POST", path: `/conversations/${x.busyConv}/fork`, body: { message_id: x.busyReply } }),
  },
  { name: "DELETE a conversation", probe: (x) => ({ method: "DELETE", path: `/conversations/${x.conv}` }) },
  {
    name: "DELETE a conversation with a reply in flight",
    probe: (x) => ({ method: "DELETE", path: `/conversations/${x.busyConv}` }),
  },
  {
    name: "POST a message and wait for the reply",
    probe: (x) => ({ method: "POST", path: `/conversations/${x.conv}/messages`, body: { content: "B writes" } }),
  },
  {
    name: "POST a message with stream: true",
    probe: (x) => ({ method: "POST", path: `/conversations/${x.conv}/messages`, body: { content: "B writes", stream: true } }),
  },
  {
    name: "POST a message with wait: false",
    probe: (x) => ({ method: "POST", path: `/conversations/${x.conv}/messages`, body: { content: "B writes", wait: false } }),
  },
  {
    name: "POST a system message that asks for no reply",
    probe: (x) => ({ method: "POST", path: `/conversations/${x.conv}/messages`, body: { role: "system", content: "Obey B." } }),
  },
  {
    name: "POST a message to a conversation with a reply in flight (404, not 409 busy)",
    probe: (x) => ({ method: "POST", path: `/conversations/${x.busyConv}/messages`, body: { content: "B writes" } }),
  },
  {
    name: "POST A's very message under A's Idempotency-Key",
    probe: (x) => ({
      method: "POST",
      path: `/conversations/${x.conv}/messages`,
      body: A_APPEND_BODY,
      headers: { "idempotency-key": A_KEYS.append },
    }),
  },
  // follow
  {
    name: "follow a finished reply's events",
    probe: (x) => ({ method: "GET", path: `/conversations/${x.conv}/messages/${x.reply}/events` }),
  },
  {
    name: "follow a finished reply's events from a Last-Event-ID",
    probe: (x) => ({
      method: "GET",
      path: `/conversations/${x.conv}/messages/${x.reply}/events`,
      headers: { "last-event-id": LAST_EVENT_ID },
    }),
  },
  {
    name: "follow a reply in flight",
    probe: (x) => ({ method: "GET", path: `/conversations/${x.busyConv}/messages/${x.busyReply}/events` }),
  },
  // cancel
  {
    name: "cancel a finished reply",
    probe: (x) => ({ method: "POST", path: `/conversations/${x.conv}/messages/${x.reply}/cancel` }),
  },
  {
    name: "cancel a reply in flight",
    probe: (x) => ({ method: "POST", path: `/conversations/${x.busyConv}/messages/${x.busyReply}/cancel` }),
  },
  {
    name: "cancel a user message (404, not 400 'not a reply')",
    probe: (x) => ({ method: "POST", path: `/conversations/${x.conv}/messages/${x.userMsg}/cancel` }),
  },
  // the conversation-bound chat completions
  {
    name: "POST a bound chat completion",
    probe: (x) => ({ method: "POST", path: `/conversations/${x.conv}/chat/completions`, body: served }),
  },
  {
    name: "POST a bound chat completion with stream: true",
    probe: (x) => ({ method: "POST", path: `/conversations/${x.conv}/chat/completions`, body: { ...served, stream: true } }),
  },
  {
    name: "POST a bound chat completion to a conversation with a reply in flight",
    probe: (x) => ({ method: "POST", path: `/conversations/${x.busyConv}/chat/completions`, body: served }),
  },
  {
    name: "POST A's very bound chat completion under A's Idempotency-Key",
    probe: (x) => ({
      method: "POST",
      path: `/conversations/${x.conv}/chat/completions`,
      body: A_COMPLETE_BODY,
      headers: { "idempotency-key": A_KEYS.complete },
    }),
  },
  // B's own conversation with A's message ids, and A's conversation with B's message id
  {
    name: "GET A's reply through B's own conversation",
    probe: (x) => ({ method: "GET", path: `/conversations/${own.conv}/messages/${x.reply}` }),
  },
  {
    name: "GET A's user message through B's own conversation",
    probe: (x) => ({ method: "GET", path: `/conversations/${own.conv}/messages/${x.userMsg}` }),
  },
  {
    name: "follow A's reply through B's own conversation",
    probe: (x) => ({ method: "GET", path: `/conversations/${own.conv}/messages/${x.reply}/events` }),
  },
  {
    name: "cancel A's reply in flight through B's own conversation",
    probe: (x) => ({ method: "POST", path: `/conversations/${own.conv}/messages/${x.busyReply}/cancel` }),
  },
  {
    name: "GET B's own reply through A's conversation",
    probe: (x) => ({ method: "GET", path: `/conversations/${x.conv}/messages/${own.reply}` }),
  },
  {
    name: "cancel B's own reply through A's conversation",
    probe: (x) => ({ method: "POST", path: `/conversations/${x.conv}/messages/${own.reply}/cancel` }),
  },
];

describe("tenant B with tenant A's ids", () => {
  let before: Awaited<ReturnType<typeof tenantRows>>;
  let bBefore: Awaited<ReturnType<typeof tenantRows>>;

  beforeAll(async () => {
    before = await tenantRows(TENANT_A);
    bBefore = await tenantRows(TENANT_B);
    // What the matrix is about: A has conversations, messages and keys to leak or change.
    expect(before.conversations).toHaveLength(2);
    expect(before.messages).toHaveLength(6);
    expect(before.idempotencyKeys.map((k) => k.key).sort()).toEqual([A_KEYS.append, A_KEYS.complete, A_KEYS.create].sort());
  });

  afterAll(async () => {
    // The reply in flight would otherwise hold A's slot (and the worker) for ten minutes.
    if (ids) await a.post(`/conversations/${ids.busyConv}/messages/${ids.busyReply}/cancel`);
  });

  it.each(matrix)("$name: 404, the same answer as for ids that do not exist", async ({ probe }) => {
    const absent: Ids = {
      conv: newConversationId(),
      userMsg: newMessageId(),
      reply: newMessageId(),
      busyConv: newConversationId(),
      busyReply: newMessageId(),
    };
    const foreign = await send(probe(ids));
    const missing = await send(probe(absent));

    expect(foreign.status).toBe(404);
    expect(foreign.contentType).toMatch(/^application\/json/);
    expect(foreign.body).toMatchObject({
      error: { type: "invalid_request_error", code: "not_found", message: expect.any(String) },
    });
    expect(withIdsNamed(foreign, ids)).toEqual(withIdsNamed(missing, absent));
  });

  it("lists none of A's conversations to B, in either order", async () => {
    const aConversations = before.conversations.map((c) => c.id as string);
    for (const order of ["desc", "asc"]) {
      const listed = await b.get(`/conversations?limit=100&order=${order}`);
      expect(listed.status).toBe(200);
      expect(listed.body.data.map((c: any) => c.id)).toEqual([own.conv]);
    }
    const listedToA = await a.get("/conversations?limit=100");
    expect(listedToA.body.data.map((c: any) => c.id).sort()).toEqual([...aConversations].sort());
  });

  it("pages B's own history from A's message id as from an id that does not exist", async () => {
    for (const cursor of ["after", "before"]) {
      const foreign = await send({ method: "GET", path: `/conversations/${own.conv}/messages?${cursor}=${ids.userMsg}` });
      const stranger = newMessageId();
      const missing = await send({ method: "GET", path: `/conversations/${own.conv}/messages?${cursor}=${stranger}` });
      expect(foreign.status).toBe(400);
      expect(withIdsNamed(foreign, ids)).toEqual(withIdsNamed(missing, { ...ids, userMsg: stranger }));
    }
  });

  it("leaves A's conversations, messages and idempotency keys exactly as they were", async () => {
    const after = await tenantRows(TENANT_A);
    expect(after).toEqual(before);
    const [busyReply] = after.messages.filter((m) => m.id === ids.busyReply);
    expect(busyReply?.status).toBe("in_progress");
    // And A still sees all of it through the API.
    const history = await a.get(`/conversations/${ids.conv}/messages`);
    expect(history.body.data.map((m: any) => m.id)).toEqual(
      before.messages.filter((m) => m.conversation_id === ids.conv).sort((x, y) => x.seq - y.seq).map((m) => m.id),
    );
  });

  it("stores nothing for B and keeps no Idempotency-Key or reply slot of B's from the refused requests", async () => {
    const bAfter = await tenantRows(TENANT_B);
    expect(bAfter).toEqual(bBefore);
    expect(bAfter.idempotencyKeys).toEqual([]);
    // B has one reply slot: a refused request that kept it would make this a 429.
    const turn = await whenSlotFree(() => b.post(`/conversations/${own.conv}/messages`, { content: "B asks again" }));
    expect(turn.status).toBe(201);
    expect(turn.body.reply.status).toBe("completed");
  });

  it("leaves A's reply in flight for A to cancel", async () => {
    const cancelled = await a.post(`/conversations/${ids.busyConv}/messages/${ids.busyReply}/cancel`);
    expect(cancelled.status).toBe(200);
    expect(cancelled.body).toMatchObject({ id: ids.busyReply, status: "cancelled" });
  });
});

describe("Idempotency-Keys across tenants", () => {
  it("gives B its own new conversation for A's key and body, and A still its own", async () => {
    const fromB = await b.post("/conversations", A_CREATE_BODY, { "idempotency-key": A_KEYS.create });
    expect(fromB.status).toBe(201);
    expect(fromB.headers.get("idempotent-replayed")).toBeNull();
    expect(fromB.body.id).not.toBe(ids.conv);
    expect(fromB.body.message_count).toBe(0);
    const [row] = await ctx.service.sql`select tenant_id from conversations where id = ${fromB.body.id}`;
    expect(row?.tenant_id).toBe(TENANT_B);

    // B's repeat is answered from B's record; A's from A's.
    const againFromB = await b.post("/conversations", A_CREATE_BODY, { "idempotency-key": A_KEYS.create });
    expect(againFromB.headers.get("idempotent-replayed")).toBe("true");
    expect(againFromB.body.id).toBe(fromB.body.id);
    const againFromA = await a.post("/conversations", A_CREATE_BODY, { "idempotency-key": A_KEYS.create });
    expect(againFromA.headers.get("idempotent-replayed")).toBe("true");
    expect(againFromA.body.id).toBe(ids.conv);
  });

  it("does not answer B with a 409 for a key that only A has used with another request", async () => {
    const fromB = await b.post("/conversations", { title: "B's own plans" }, { "idempotency-key": A_KEYS.append });
    expect(fromB.status).toBe(201);
    expect(fromB.body).toMatchObject({ title: "B's own plans", message_count: 0 });
    expect(fromB.headers.get("idempotent-replayed")).toBeNull();
  });

  it("gives B its own stateless chat completion for A's key and body", async () => {
    const body = { model: MODEL, messages: [{ role: "user", content: "A's stateless question" }] };
    const fromA = await whenSlotFree(() => a.post("/chat/completions", body, { "idempotency-key": A_KEYS.stateless }));
    expect(fromA.status).toBe(200);
    const fromB = await whenSlotFree(() => b.post("/chat/completions", body, { "idempotency-key": A_KEYS.stateless }));
    expect(fromB.status).toBe(200);
    expect(fromB.headers.get("idempotent-replayed")).toBeNull();
    expect(fromB.body.id).not.toBe(fromA.body.id);
    expect(fromB.body.choices[0].message.content).toBe(fromA.body.choices[0].message.content);
  });
});
