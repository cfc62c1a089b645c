// The opaque continuations of listJobs (the (created_at, id) keyset of the last job of a page)
// and listSchedules (the last name of a page), as base64url JSON. Clients only hand it back; a gateway may call decodeListCursor to refuse
// a tampered one as bad input before it reaches the store.

export interface ListCursor {
  createdAtMs: number;
  id: string;
}

export function encodeListCursor(cursor: ListCursor): string {
  return Buffer.from(JSON.stringify([cursor.createdAtMs, cursor.id])).toString('base64url');
}

/** The keyset in a cursor, or null when the text is not one of ours. */
export function decodeListCursor(text: string): ListCursor | null {
  if (text.length > 256 || !/^[A-Za-z0-9_-]+$/.test(text)) return null;
  try {
    const value: unknown = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
    if (!Array.isArray(value) || value.length !== 2) return null;
    const [createdAtMs, id] = value as unknown[];
    if (typeof createdAtMs !== 'number' || !Number.isSafeInteger(createdAtMs) || typeof id !== 'string') return null;
    return { createdAtMs, id };
  } catch {
    return null;
  }
}

/** The opaque continuation of listSchedules: the last name of a page, as base64url JSON like
 * listJobs' cursor above, so that a cursor of another listing, or a tampered one,
 * is refused rather than taken for a name. */
export function encodeScheduleCursor(lastName: string): string {
  return Buffer.from(JSON.stringify([lastName])).toString('base64url');
}

/** The name in a cursor, or null when the text is not one of ours. */
export function decodeScheduleCursor(text: string): string | null {
  if (!/^[A-Za-z0-9_-]+$/.test(text)) return null;
  try {
    const value: unknown = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
    return Array.isArray(value) && value.length === 1 && typeof value[0] === 'string' ? value[0] : null;
  } catch {
    return null;
  }
}
