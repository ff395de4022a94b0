/**
 * How a reply takes and gives back its tenant's concurrency slot: declared
 * here, where the domain needs it; src/access/reply-slots.ts implements it in Redis.
 */
export interface ReplySlots {
  /** Takes a slot for `replyId`, or throws RateLimitedError when the tenant has none left. */
  acquire(tenantId: string, replyId: string): Promise<void>;
  release(tenantId: string, replyId: string): Promise<void>;
}
