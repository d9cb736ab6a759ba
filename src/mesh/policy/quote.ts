/** User text inside one-line messages. */

/** A user's text inside a one-line message: JSON-quoted with every line or control character escaped; long ones cut. */
export function quote(text: string): string {
  return escapeText(text.length > 80 ? `${text.slice(0, 77)}...` : text);
}

/** JSON.stringify, plus the C1 controls and U+2028/2029 that it leaves as they are. */
export function escapeText(text: string): string {
  return JSON.stringify(text).replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
