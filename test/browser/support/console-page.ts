import { setTimeout as sleep } from "node:timers/promises";
import type { Locator, Page } from "playwright-core";
import { expect } from "vitest";

/**
 * The console as issue 17's UI contract names it: every locator here is an accessible name, a label, a
 * role or a data attribute from that contract, nothing else.
 */

/** How long a test waits for something the console should show: generous, the machine is shared. */
export const UI_TIMEOUT_MS = 30_000;
/** How long for a reply paced in real time to end (a few hundred tokens at 20–25 a second, on a loaded machine). */
export const REPLY_TIMEOUT_MS = 90_000;

/** One `li` of the "Messages" list, as its data attributes and its message-content element say. */
export interface RenderedMessage {
  id: string;
  role: string | null;
  status: string | null;
  seq: number;
  /** The text of its `data-testid="message-content"`, or null when it has none. */
  content: string | null;
}

/** Text as a reader sees it: runs of whitespace as one space, none at the ends. */
export const normalized = (s: string | null | undefined) => (s ?? "").replace(/\s+/g, " ").trim();

const IN_FLIGHT = new Set(["queued", "in_progress"]);
export const inFlight = (m: RenderedMessage | undefined) => m !== undefined && IN_FLIGHT.has(m.status ?? "");

/** The DOM element as the functions run in the page see it (this project's TypeScript has no DOM library). */
interface DomElement {
  getAttribute(name: string): string | null;
  querySelector(selector: string): DomElement | null;
  querySelectorAll(selector: string): ArrayLike<DomElement>;
  textContent: string | null;
  getBoundingClientRect(): { top: number; bottom: number; left: number; right: number };
  ownerDocument: { defaultView: { innerHeight: number; innerWidth: number } | null };
}

export class ConsolePage {
  readonly page: Page;
  readonly baseUrl: string;

  constructor(page: Page, baseUrl: string) {
    this.page = page;
    this.baseUrl = baseUrl;
  }

  /** Opens the console at a hash route (`#/`, `#/new`, `#/c/<id>`). */
  async goto(route = "#/"): Promise<void> {
    await this.page.goto(`${this.baseUrl}/${route}`);
  }

  /** The route the page is at: the URL's hash (`#/c/conv_…`). */
  route(): string {
    return new URL(this.page.url()).hash;
  }

  // Sign in

  get signInForm(): Locator {
    return this.page.getByRole("form", { name: "Sign in" });
  }

  get signOutButton(): Locator {
    return this.page.getByRole("button", { name: "Sign out", exact: true });
  }

  /** `role="alert"` elements whose text contains `text`. */
  alert(text: string | RegExp): Locator {
    return this.page.getByRole("alert").filter({ hasText: text });
  }

  /** Fills in the sign-in form (opening the console first when it is not shown) and submits it. */
  async submitKey(key: string): Promise<void> {
    if (!(await this.signInForm.isVisible())) await this.goto("#/");
    await this.signInForm.getByLabel("API key", { exact: true }).fill(key);
    await this.signInForm.getByRole("button", { name: "Sign in", exact: true }).click();
  }

  /** Signs in with `key` and waits until the console shows it is signed in. */
  async signIn(key: string): Promise<void> {
    await this.submitKey(key);
    await this.signOutButton.waitFor({ timeout: UI_TIMEOUT_MS });
  }

  /** What the tab keeps in sessionStorage under `key`. */
  sessionItem(key: string): Promise<string | null> {
    return this.page.evaluate((k) => (globalThis as unknown as { sessionStorage: { getItem(k: string): string | null } }).sessionStorage.getItem(k), key);
  }

  // Conversations

  get search(): Locator {
    return this.page.getByRole("searchbox", { name: "Search conversations" });
  }

  get conversationList(): Locator {
    return this.page.getByRole("list", { name: "Conversation list" });
  }

  conversationItem(id: string): Locator {
    return this.conversationList.locator(`li[data-conversation-id="${id}"]`);
  }

  /** The ids of the conversations the list shows, top to bottom. */
  async listedConversationIds(): Promise<string[]> {
    const items = this.conversationList.locator("li[data-conversation-id]");
    return (await this.conversationList.count()) === 0 ? [] : items.evaluateAll((lis) => lis.map((li) => (li as unknown as DomElement).getAttribute("data-conversation-id") ?? ""));
  }

  // New conversation

  get newConversationForm(): Locator {
    return this.page.getByRole("form", { name: "New conversation" });
  }

  /** Fills the "New conversation" form (reached by its link) and creates it; resolves with the new conversation's id. */
  async createConversation(fields: { model: string; title?: string; system?: string; otherParams?: string }): Promise<string> {
    await this.page.getByRole("link", { name: "New conversation", exact: true }).click();
    const form = this.newConversationForm;
    await form.getByLabel("Model", { exact: true }).selectOption(fields.model);
    if (fields.title !== undefined) await form.getByLabel("Title", { exact: true }).fill(fields.title);
    if (fields.system !== undefined) await form.getByLabel("System prompt", { exact: true }).fill(fields.system);
    if (fields.otherParams !== undefined) await form.getByLabel("Other params (JSON)", { exact: true }).fill(fields.otherParams);
    await form.getByRole("button", { name: "Create conversation", exact: true }).click();
    await expect.poll(() => this.route(), { timeout: UI_TIMEOUT_MS, message: "the console went to the new conversation" }).toMatch(/^#\/c\/conv_/);
    return this.route().slice("#/c/".length);
  }

  // Conversation

  get main(): Locator {
    return this.page.getByRole("main");
  }

  heading(title: string): Locator {
    return this.main.getByRole("heading", { name: title, exact: true });
  }

  get messageList(): Locator {
    return this.page.getByRole("list", { name: "Messages" });
  }

  messageItem(id: string): Locator {
    return this.messageList.locator(`li[data-message-id="${id}"]`);
  }

  /** The message-content element of the message whose text is exactly `text`. */
  messageWithText(text: string): Locator {
    const exact = new RegExp(`^\\s*${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\s*$`);
    return this.messageList.getByTestId("message-content").filter({ hasText: exact });
  }

  /** Opens a conversation by its route and waits for its messages list. */
  async openConversation(id: string): Promise<void> {
    await this.goto(`#/c/${id}`);
    await this.messageList.waitFor({ timeout: UI_TIMEOUT_MS });
  }

  /** Every message the list shows, top to bottom, read at one instant (nothing waited for). */
  async messages(): Promise<RenderedMessage[]> {
    if ((await this.messageList.count()) === 0) return [];
    return this.messageList.evaluate((ol) => {
      const list = ol as unknown as DomElement;
      return Array.from(list.querySelectorAll("li[data-message-id]")).map((li) => ({
        id: li.getAttribute("data-message-id") ?? "",
        role: li.getAttribute("data-role"),
        status: li.getAttribute("data-status"),
        seq: Number(li.getAttribute("data-seq")),
        content: li.querySelector('[data-testid="message-content"]')?.textContent ?? null,
      }));
    }, undefined);
  }

  async message(id: string): Promise<RenderedMessage | undefined> {
    return (await this.messages()).find((m) => m.id === id);
  }

  /** The last assistant message shown. */
  async lastReply(): Promise<RenderedMessage | undefined> {
    return (await this.messages()).findLast((m) => m.role === "assistant");
  }

  get composer(): Locator {
    return this.page.getByRole("form", { name: "Send a message" });
  }

  get stopButton(): Locator {
    return this.page.getByRole("button", { name: "Stop", exact: true });
  }

  /** The `role="status"` live region(s) whose text contains `text`. */
  status(text: string | RegExp): Locator {
    return this.page.getByRole("status").filter({ hasText: text });
  }

  /** Types `text` into the composer and presses its Send button. */
  async send(text: string): Promise<void> {
    await this.composer.getByLabel("Message", { exact: true }).fill(text);
    await this.composer.getByRole("button", { name: "Send", exact: true }).click();
  }

  /** Waits until the last assistant message is a reply in flight with a real id; resolves with that id. */
  async replyInFlight(): Promise<string> {
    await expect
      .poll(async () => { const r = await this.lastReply(); return inFlight(r) && r!.id.startsWith("msg_"); }, { timeout: UI_TIMEOUT_MS, message: "a reply in flight (queued or in_progress) is shown" })
      .toBe(true);
    return (await this.lastReply())!.id;
  }

  /** The length of message `id`'s content as shown (0 when it shows none yet). */
  async contentLength(id: string): Promise<number> {
    return normalized((await this.message(id))?.content).length;
  }

  /**
   * Sees reply `id`'s content grow while it is in flight: some content, then more, on two reads, the
   * reply in flight at both. Resolves with the longer length.
   */
  async seeTokensArrive(id: string, atLeast = 1): Promise<number> {
    const shownInFlight = async (min: number) => {
      const m = await this.message(id);
      return inFlight(m) && normalized(m!.content).length >= min ? normalized(m!.content).length : 0;
    };
    let first = 0;
    await expect.poll(async () => (first = await shownInFlight(atLeast)), { timeout: UI_TIMEOUT_MS, message: `reply ${id} shows content while in flight` }).toBeGreaterThan(0);
    let second = 0;
    await expect.poll(async () => (second = await shownInFlight(first + 1)), { timeout: UI_TIMEOUT_MS, message: `reply ${id}'s content grows past ${first} characters while in flight` }).toBeGreaterThan(0);
    return second;
  }

  /** Waits until message `id` shows `status`; resolves with it as shown then. */
  async waitForStatus(id: string, status: string, timeout = REPLY_TIMEOUT_MS): Promise<RenderedMessage> {
    await expect.poll(async () => (await this.message(id))?.status, { timeout, message: `message ${id} shows status ${status}` }).toBe(status);
    return (await this.message(id))!;
  }

  /**
   * Waits until message `id` shows exactly `text` (compared as a reader sees it): what a finished reply's
   * last event or the stored message settles to, so a race between its status and its text does not matter.
   */
  async waitForContent(id: string, text: string | null, timeout = UI_TIMEOUT_MS): Promise<void> {
    await expect.poll(async () => normalized((await this.message(id))?.content), { timeout, message: `message ${id} shows the stored content` }).toBe(normalized(text));
  }

  /** The `details` inside `scope` whose summary is `summary`, opened (a click on its summary, unless it is open already). */
  async openDetails(scope: Locator, summary: string): Promise<Locator> {
    const details = scope.locator("details").filter({ has: this.page.locator("summary", { hasText: summary }) }).first();
    await details.waitFor();
    if (!(await details.evaluate((d) => (d as unknown as { open: boolean }).open, undefined))) await details.locator("summary").first().click();
    return details;
  }

  /** Whether some of `locator` is inside the window's viewport (not scrolled out of sight). */
  async inViewport(locator: Locator): Promise<boolean> {
    if ((await locator.count()) === 0) return false;
    return locator.first().evaluate((el) => {
      const e = el as unknown as DomElement;
      const r = e.getBoundingClientRect();
      const view = e.ownerDocument.defaultView;
      return view !== null && r.bottom > 0 && r.top < view.innerHeight && r.bottom > r.top;
    }, undefined);
  }

  /**
   * Goes back through the history until `target` is shown: presses "Load older messages" while it is
   * there, and otherwise scrolls the top message into view (the list loads older ones when scrolled to
   * the top). Fails after `timeout`.
   */
  async scrollBackUntil(target: Locator, timeout = REPLY_TIMEOUT_MS): Promise<void> {
    const deadline = Date.now() + timeout;
    const older = this.page.getByRole("button", { name: "Load older messages", exact: true });
    while ((await target.count()) === 0) {
      if (Date.now() > deadline) throw new Error(`not shown after scrolling back for ${timeout} ms: ${target}`);
      const top = this.messageList.locator("li[data-message-id]").first();
      if ((await top.count()) > 0) await top.scrollIntoViewIfNeeded({ timeout: 5_000 }).catch(() => {});
      if (await older.isVisible()) await older.click({ timeout: 5_000 }).catch(() => {});
      await sleep(300);
    }
    await target.first().scrollIntoViewIfNeeded();
  }
}
