import { describe, expect, it } from "vitest";
import { apiClient } from "../support/http.ts";
import { seedApiKeyFor } from "../support/keys.ts";
import { useTestService } from "../support/service.ts";

const ctx = useTestService();

describe("conversations", () => {
  it("creates one with model, system prompt, params and metadata, and reads it back", async () => {
    const created = await ctx.api.post("/conversations", {
      model: "parley-sim-1",
      system: "You are a helpful travel guide.",
      title: "Lisbon",
      params: { temperature: 0.7, max_tokens: 512 },
      metadata: { app: "travel" },
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      object: "conversation",
      model: "parley-sim-1",
      system: "You are a helpful travel guide.",
      title: "Lisbon",
      params: { temperature: 0.7, max_tokens: 512 },
      metadata: { app: "travel" },
      message_count: 0,
    });
    expect(created.body.id).toMatch(/^conv_[0-9a-z]{26}$/);
    expect(created.body.created_at).toBeGreaterThan(1_700_000_000);

    const fetched = await ctx.api.get(`/conversations/${created.body.id}`);
    expect(fetched.status).toBe(200);
    expect(fetched.body).toEqual(created.body);
  });

  it("uses the default model when none is named", async () => {
    const created = await ctx.api.post("/conversations", {});
    expect(created.status).toBe(201);
    expect(created.body.model).toBe("parley-sim-1");
    expect(created.body.system).toBeNull();
  });

  it("imports an existing history with seqs 1..n", async () => {
    const created = await ctx.api.post("/conversations", {
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Hi" },
        { role: "assistant", content: "Hello!" },
      ],
    });
    expect(created.status).toBe(201);
    expect(created.body.message_count).toBe(3);
    const history = await ctx.api.get(`/conversations/${created.body.id}/messages`);
    expect(history.body.data.map((m: any) => [m.seq, m.role, m.content, m.status])).toEqual([
      [1, "system", "Be brief.", "completed"],
      [2, "user", "Hi", "completed"],
      [3, "assistant", "Hello!", "completed"],
    ]);
  });

  it("patches title, system, model, params and metadata", async () => {
    const { body: conv } = await ctx.api.post("/conversations", { title: "old" });
    const patched = await ctx.api.patch(`/conversations/${conv.id}`, {
      title: "new",
      system: "Answer in French.",
      params: { temperature: 0.1 },
      metadata: { k: "v" },
    });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ title: "new", system: "Answer in French.", params: { temperature: 0.1 }, metadata: { k: "v" } });
    expect((await ctx.api.get(`/conversations/${conv.id}`)).body.title).toBe("new");
  });

  it("deletes a conversation and its messages", async () => {
    const { body: conv } = await ctx.api.post("/conversations", { messages: [{ role: "user", content: "x" }] });
    const deleted = await ctx.api.delete(`/conversations/${conv.id}`);
    expect(deleted.status).toBe(200);
    expect(deleted.body).toEqual({ id: conv.id, object: "conversation.deleted", deleted: true });
    expect((await ctx.api.get(`/conversations/${conv.id}`)).status).toBe(404);
    const [row] = await ctx.service.sql`select count(*)::int as n from messages where conversation_id = ${conv.id}`;
    const n = row?.n;
    expect(n).toBe(0);
    expect((await ctx.api.delete(`/conversations/${conv.id}`)).status).toBe(404);
  });
});

describe("listing conversations", () => {
  it("pages newest first with after and before", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await ctx.api.post("/conversations", { title: `page-${i}` })).body.id);
    const newest = [...ids].reverse();

    const first = await ctx.api.get("/conversations?limit=2");
    expect(first.status).toBe(200);
    expect(first.body.object).toBe("list");
    expect(first.body.data.map((c: any) => c.id)).toEqual(newest.slice(0, 2));
    expect(first.body.first_id).toBe(newest[0]);
    expect(first.body.last_id).toBe(newest[1]);
    expect(first.body.has_more).toBe(true);

    const second = await ctx.api.get(`/conversations?limit=2&after=${first.body.last_id}`);
    expect(second.body.data.map((c: any) => c.id)).toEqual(newest.slice(2, 4));

    const back = await ctx.api.get(`/conversations?limit=2&before=${second.body.first_id}`);
    expect(back.body.data.map((c: any) => c.id)).toEqual(newest.slice(0, 2));
    expect(back.body.has_more).toBe(false);

    const asc = await ctx.api.get(`/conversations?limit=3&order=asc&after=${ids[0]}`);
    expect(asc.body.data.map((c: any) => c.id)).toEqual(ids.slice(1, 4));
  });

  it("rejects bad paging parameters with 400 naming the field", async () => {
    for (const [query, param] of [
      ["limit=0", "limit"],
      ["limit=101", "limit"],
      ["limit=abc", "limit"],
      ["order=sideways", "order"],
      ["after=conv_a&before=conv_b", "before"],
    ]) {
      const res = await ctx.api.get(`/conversations?${query}`);
      expect(res.status, query).toBe(400);
      expect(res.body.error).toMatchObject({ type: "invalid_request_error", param });
    }
  });
});

describe("searching conversations with q", () => {
  const create = async (body: object) => (await ctx.api.post("/conversations", body)).body.id as string;
  const search = async (query: string) => {
    const res = await ctx.api.get(`/conversations?${query}`);
    expect(res.status, query).toBe(200);
    return res.body;
  };
  const idsOf = (page: { data: { id: string }[] }) => page.data.map((c) => c.id);

  it("finds the text in a title, a metadata key or a metadata value, whatever its case", async () => {
    const inTitle = await create({ title: "Trip to Quokka Island" });
    const inKey = await create({ metadata: { quokkaRef: "x" } });
    const inValue = await create({ metadata: { app: "the QUOKKA app" } });
    await create({ title: "Trip to Rottnest", metadata: { animal: "marsupial" } });
    const newestFirst = [inValue, inKey, inTitle];

    for (const q of ["quokka", "QuOkKa", "%20quokka%20", "okk"]) expect(idsOf(await search(`q=${q}`)), q).toEqual(newestFirst);
    expect(idsOf(await search("q=quokka&order=asc"))).toEqual([...newestFirst].reverse());
    expect(idsOf(await search("q=quokkaRef"))).toEqual([inKey]);
    expect(idsOf(await search(`q=${encodeURIComponent("quokka island")}`))).toEqual([inTitle]);
  });

  it("matches %, _ and \\ in q literally", async () => {
    const percent = await create({ title: "sale: 50% off" });
    await create({ title: "sale: 50 and more off" });
    const underscore = await create({ metadata: { snake_case: "yes" } });
    await create({ metadata: { snakeXcase: "no" } });
    const backslash = await create({ title: "C:\\temp" });
    await create({ title: "C:temp" });

    expect(idsOf(await search(`q=${encodeURIComponent("50%")}`))).toEqual([percent]);
    expect(idsOf(await search(`q=${encodeURIComponent("e_c")}`))).toEqual([underscore]);
    expect(idsOf(await search(`q=${encodeURIComponent(":\\t")}`))).toEqual([backslash]);
    expect(idsOf(await search(`q=${encodeURIComponent("%")}`))).toEqual([percent]);
  });

  it("pages through the matches only, with has_more, after and before", async () => {
    const matches: string[] = [];
    for (let i = 0; i < 5; i++) {
      matches.push(await create({ title: `Wombat trip ${i}` }));
      await create({ title: `Dingo trip ${i}` });
    }
    const newest = [...matches].reverse();

    const first = await search("q=wombat&limit=2");
    expect(first).toMatchObject({ first_id: newest[0], last_id: newest[1], has_more: true });
    expect(idsOf(first)).toEqual(newest.slice(0, 2));
    const second = await search(`q=wombat&limit=2&after=${first.last_id}`);
    expect(idsOf(second)).toEqual(newest.slice(2, 4));
    expect(second.has_more).toBe(true);
    const last = await search(`q=wombat&limit=2&after=${second.last_id}`);
    expect(idsOf(last)).toEqual(newest.slice(4));
    expect(last.has_more).toBe(false);

    const back = await search(`q=wombat&limit=3&before=${last.first_id}`);
    expect(idsOf(back)).toEqual(newest.slice(1, 4));
    expect(back.has_more).toBe(true);
  });

  it("answers no match with an empty list, and an empty or blank q with the whole list", async () => {
    expect(await search("q=no-conversation-says-this")).toEqual({ object: "list", data: [], first_id: null, last_id: null, has_more: false });
    const all = idsOf(await search("limit=100"));
    expect(all.length).toBeGreaterThan(0);
    expect(idsOf(await search("q=&limit=100"))).toEqual(all);
    expect(idsOf(await search("q=%20%20&limit=100"))).toEqual(all);
  });

  it("never finds another tenant's conversations", async () => {
    const other = apiClient(`${ctx.service.url}/v1`, await seedApiKeyFor(ctx.service.sql, "search-other-tenant"));
    const theirs = (await other.post("/conversations", { title: "Numbat notes", metadata: { numbat: "numbat" } })).body.id;
    const ours = await create({ title: "Numbat sightings" });

    expect(idsOf(await search("q=numbat"))).toEqual([ours]);
    const theirSearch = await other.get("/conversations?q=numbat");
    expect(theirSearch.body.data.map((c: { id: string }) => c.id)).toEqual([theirs]);
  });

  it("answers a q over 200 characters, or with a NUL, with 400 naming q", async () => {
    await create({ title: "x".repeat(200) });
    expect((await search(`q=${"x".repeat(200)}`)).data).toHaveLength(1);
    for (const q of ["x".repeat(201), "%00"]) {
      const res = await ctx.api.get(`/conversations?q=${q}`);
      expect(res.status, q).toBe(400);
      expect(res.body).toEqual({ error: { message: expect.any(String), type: "invalid_request_error", param: "q", code: "invalid_request" } });
    }
  });
});

describe("bad input", () => {
  it("answers malformed JSON with 400 invalid_json", async () => {
    const res = await ctx.api.request("POST", "/conversations", "{not json", { "content-type": "application/json" });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: "invalid_json", type: "invalid_request_error" });
  });

  it("answers schema violations with 400 naming the field", async () => {
    const cases: [unknown, string][] = [
      [{ model: 42 }, "model"],
      [{ params: "hot" }, "params"],
      [{ metadata: { k: 1 } }, "metadata.k"],
      [{ messages: [{ role: "robot", content: "x" }] }, "messages.0.role"],
      [{ colour: "blue" }, ""],
    ];
    for (const [body, param] of cases) {
      const res = await ctx.api.post("/conversations", body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.type).toBe("invalid_request_error");
      if (param) expect(res.body.error.param).toBe(param);
      else expect(res.body.error.message).toMatch(/colour/);
    }
    const [row] = await ctx.service.sql`select count(*)::int as n from conversations where title = 'never'`;
    const n = row?.n;
    expect(n).toBe(0);
  });

  it("answers a body not sent as JSON with 415", async () => {
    const res = await ctx.api.request("POST", "/conversations", '{"title":"x"}', { "content-type": "text/plain" });
    expect(res.status).toBe(415);
    expect(res.body.error.code).toBe("unsupported_media_type");
  });

  it("answers text Postgres cannot store (NUL) with 400 naming the field, storing nothing", async () => {
    const cases: [unknown, string][] = [
      [{ title: "nul-test\u0000" }, "title"],
      [{ system: "a\u0000b", title: "nul-test" }, "system"],
      [{ metadata: { k: "\u0000" }, title: "nul-test" }, "metadata.k"],
      [{ params: { stop: ["\u0000"] }, title: "nul-test" }, "params"],
      [{ messages: [{ role: "user", content: "x\u0000" }], title: "nul-test" }, "messages.0.content"],
    ];
    for (const [body, param] of cases) {
      const res = await ctx.api.post("/conversations", body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.param).toBe(param);
    }
    const [row] = await ctx.service.sql`select count(*)::int as n from conversations where title = 'nul-test'`;
    expect(row?.n).toBe(0);
  });

  it("answers an unserved model with 404 model_not_found listing what is served", async () => {
    const res = await ctx.api.post("/conversations", { model: "gpt-nonexistent" });
    expect(res.status).toBe(404);
    expect(res.body.error).toMatchObject({ code: "model_not_found", param: "model" });
    expect(res.body.error.message).toContain("parley-sim-1");
    const { body: conv } = await ctx.api.post("/conversations", {});
    expect((await ctx.api.patch(`/conversations/${conv.id}`, { model: "nope" })).status).toBe(404);
  });

  it("answers unknown and malformed ids with 404", async () => {
    for (const id of ["conv_01jf3t8vvaf8s9k0d7k6x1s2y3", "nonsense", "conv_'; drop table x"]) {
      const res = await ctx.api.get(`/conversations/${encodeURIComponent(id)}`);
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe("not_found");
    }
    expect((await ctx.api.patch("/conversations/conv_01jf3t8vvaf8s9k0d7k6x1s2y3", { title: "x" })).status).toBe(404);
  });

  it("answers an unknown route with 404 in the error shape", async () => {
    const res = await ctx.api.get("/nothing-here");
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe("route_not_found");
  });
});

describe("models", () => {
  it("lists what is served in the SDK list format", async () => {
    const res = await ctx.api.get("/models");
    expect(res.status).toBe(200);
    expect(res.body.object).toBe("list");
    expect(res.body.data).toContainEqual(expect.objectContaining({ id: "parley-sim-1", object: "model" }));
  });
});

describe("openapi", () => {
  it("serves the document generated from the route schemas", async () => {
    const res = await fetch(`${ctx.service.url}/openapi.json`);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as any;
    expect(doc.openapi).toBe("3.1.0");
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        "/v1/conversations",
        "/v1/conversations/{conversation_id}",
        "/v1/conversations/{conversation_id}/messages",
        "/v1/conversations/{conversation_id}/messages/{message_id}",
        "/v1/conversations/{conversation_id}/messages/{message_id}/regenerate",
        "/v1/conversations/{conversation_id}/fork",
        "/v1/chat/completions",
        "/v1/models",
        "/admin/keys",
        "/admin/keys/{prefix}/revoke",
      ]),
    );
    expect(doc.components.schemas.Message.properties.status.enum).toContain("in_progress");
    expect(doc.components.schemas.Conversation.properties.context_strategy.enum).toEqual(["auto", "summarize", "strict"]);
    const q = doc.paths["/v1/conversations"].get.parameters.find((p: any) => p.name === "q");
    expect(q).toMatchObject({ in: "query", required: false, description: expect.stringContaining("title"), schema: { maxLength: 200 } });
    expect(q.example ?? q.schema.example).toBe("lisbon");
    expect(Object.values(doc.components.securitySchemes ?? {})).toContainEqual(expect.objectContaining({ type: "http", scheme: "bearer" }));
  });
});
