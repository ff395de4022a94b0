import type { Config } from "../config.ts";
import { dataUrlBytes } from "../domain/chat-message.ts";

/**
 * The configurable size limits on what a request may carry. The route schemas
 * check shapes; these are checked on what a schema accepted (the sizes come
 * from config, the schemas are built once), by field name, so one walk covers
 * every endpoint: `content`, `system`, `messages`, `metadata`, and `limit`.
 */
export interface InputLimits {
  maxContentChars: number;
  /** Decoded bytes of data-URL images in one message's content parts. */
  maxImageBytesPerMessage: number;
  maxMessages: number;
  maxMetadataEntries: number;
  maxMetadataKeyChars: number;
  maxMetadataValueChars: number;
  maxPageLimit: number;
  /** Most keys in any one JSON object of a body; checked on the raw JSON, before any schema. */
  maxJsonObjectKeys: number;
  /** Most items in any one JSON array of a body but the top-level `messages` (maxMessages); before any schema. */
  maxJsonArrayItems: number;
  /** Largest `params` object, in bytes of its JSON; checked on the raw JSON, before any schema. */
  maxParamsBytes: number;
}

export function inputLimitsFrom(config: Config): InputLimits {
  return {
    maxContentChars: config.MAX_CONTENT_CHARS,
    maxImageBytesPerMessage: config.MAX_IMAGE_BYTES_PER_MESSAGE,
    maxMessages: config.MAX_MESSAGES_PER_REQUEST,
    maxMetadataEntries: config.MAX_METADATA_ENTRIES,
    maxMetadataKeyChars: config.MAX_METADATA_KEY_CHARS,
    maxMetadataValueChars: config.MAX_METADATA_VALUE_CHARS,
    maxPageLimit: config.MAX_PAGE_LIMIT,
    maxJsonObjectKeys: config.MAX_JSON_OBJECT_KEYS,
    maxJsonArrayItems: config.MAX_JSON_ARRAY_ITEMS,
    maxParamsBytes: config.MAX_PARAMS_BYTES,
  };
}

export interface LimitBreach {
  /** 400 unless the limit is on a size (413). */
  status?: 413;
  param: string | null;
  code: string;
  message: string;
}

/** Characters as people count them (code points), not UTF-16 units; only counted when it could matter. */
function charCount(s: string, limit: number): number {
  if (s.length <= limit) return s.length;
  let n = 0;
  for (const _ of s) n++;
  return n;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

function contentLength(content: unknown, limit: number): number {
  if (typeof content === "string") return charCount(content, limit);
  if (!Array.isArray(content)) return 0;
  return content.reduce<number>((n, part) => n + (isRecord(part) && typeof part.text === "string" ? charCount(part.text, limit) : 0), 0);
}

function checkMetadata(metadata: unknown, at: string, limits: InputLimits): LimitBreach | null {
  if (!isRecord(metadata)) return null;
  const entries = Object.entries(metadata);
  if (entries.length > limits.maxMetadataEntries) {
    return {
      param: at,
      code: "too_many_metadata_entries",
      message: `${at} has ${entries.length} entries; the limit is ${limits.maxMetadataEntries} (MAX_METADATA_ENTRIES).`,
    };
  }
  for (const [key, value] of entries) {
    if (charCount(key, limits.maxMetadataKeyChars) > limits.maxMetadataKeyChars) {
      return {
        param: at,
        code: "metadata_key_too_long",
        message: `A key of ${at} is longer than ${limits.maxMetadataKeyChars} characters (MAX_METADATA_KEY_CHARS).`,
      };
    }
    if (typeof value === "string" && charCount(value, limits.maxMetadataValueChars) > limits.maxMetadataValueChars) {
      return {
        param: `${at}.${key}`,
        code: "metadata_value_too_long",
        message: `${at}.${key} is longer than ${limits.maxMetadataValueChars} characters (MAX_METADATA_VALUE_CHARS).`,
      };
    }
  }
  return null;
}

/** The lists of messages a body may carry: chat messages, a response's input items, a conversation's items. */
export const MESSAGE_LISTS: readonly string[] = ["messages", "input", "items"];

/** Decoded bytes of the data-URL images among parts: chat `image_url` parts ({url}) and Responses `input_image` ones (a URL string). */
function partsImageBytes(content: unknown[]): number {
  let bytes = 0;
  for (const part of content) {
    if (!isRecord(part)) continue;
    const image = part.image_url;
    const url = typeof image === "string" ? image : isRecord(image) && typeof image.url === "string" ? image.url : null;
    if (url !== null) bytes += dataUrlBytes(url);
  }
  return bytes;
}

function checkMessage(message: Record<string, unknown>, at: string, limits: InputLimits): LimitBreach | null {
  // A response's `instructions` and `input` (a string), and a function call's `output`, are texts too.
  for (const field of ["content", "system", "instructions", "input", "output"] as const) {
    const length = contentLength(message[field], limits.maxContentChars);
    if (length > limits.maxContentChars) {
      return {
        param: `${at}${field}`,
        code: "content_too_long",
        message: `${at}${field} is ${length} characters long; the limit is ${limits.maxContentChars} (MAX_CONTENT_CHARS).`,
      };
    }
  }
  if (Array.isArray(message.content)) {
    const bytes = partsImageBytes(message.content);
    if (bytes > limits.maxImageBytesPerMessage) {
      return {
        status: 413,
        param: `${at}content`,
        code: "image_too_large",
        message: `${at}content carries ${bytes} bytes of images; the limit is ${limits.maxImageBytesPerMessage} per message (MAX_IMAGE_BYTES_PER_MESSAGE).`,
      };
    }
  }
  return checkMetadata(message.metadata, `${at}metadata`, limits);
}

/** The first limit a validated JSON body breaks, or null. */
export function findBodyLimitBreach(body: unknown, limits: InputLimits): LimitBreach | null {
  if (!isRecord(body)) return null;
  if (jsonDepth(body) > MAX_JSON_DEPTH) {
    return { param: null, code: "too_deeply_nested", message: `The body nests deeper than ${MAX_JSON_DEPTH} levels.` };
  }
  const own = checkMessage(body, "", limits);
  if (own) return own;
  for (const field of MESSAGE_LISTS) {
    const list = body[field];
    if (!Array.isArray(list)) continue;
    const tooMany = tooManyMessages(list, limits, field);
    if (tooMany) return tooMany;
    for (const [i, m] of list.entries()) {
      const breach = isRecord(m) ? checkMessage(m, `${field}.${i}.`, limits) : null;
      if (breach) return breach;
    }
  }
  return null;
}

export function tooManyMessages(list: unknown[], limits: InputLimits, field = "messages"): LimitBreach | null {
  if (list.length <= limits.maxMessages) return null;
  return {
    param: field,
    code: "too_many_messages",
    message: `${field} has ${list.length} items; the limit is ${limits.maxMessages} per request (MAX_MESSAGES_PER_REQUEST).`,
  };
}

/** A list request's `limit` beyond the configured largest page. */
export function findQueryLimitBreach(query: unknown, limits: InputLimits): LimitBreach | null {
  const limit = isRecord(query) ? query.limit : undefined;
  if (typeof limit !== "number" || limit <= limits.maxPageLimit) return null;
  return {
    param: "limit",
    code: "invalid_request",
    message: `limit: must be between 1 and ${limits.maxPageLimit} (MAX_PAGE_LIMIT).`,
  };
}

/** Deeper JSON than this is refused: nothing Parley takes needs it, and deep values are costly to store and copy. */
export const MAX_JSON_DEPTH = 32;

/** How deeply a JSON value nests, counted with an explicit stack (no recursion to overflow). */
export function jsonDepth(value: unknown): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== "object" || v === null) continue;
    deepest = Math.max(deepest, depth + 1);
    if (deepest > MAX_JSON_DEPTH) return deepest;
    for (const item of Array.isArray(v) ? v : Object.values(v)) stack.push([item, depth + 1]);
  }
  return deepest;
}
