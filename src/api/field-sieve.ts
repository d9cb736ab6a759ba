/**
 * Reads a protobuf message as its bytes arrive and keeps only the fields a plan names, so that a
 * large message whose bulk nobody reads is never held whole: a real Envoy's first discovery
 * request is about 60 KB, nearly all of it the node's 516 `extensions`, and an agent with ten
 * thousand streams receives ten thousand of them at once, interleaved by HTTP/2. The result is
 * the same message with the other fields left out (valid protobuf: kept fields verbatim, in
 * order; a kept sub-message re-measured), for the ordinary decoder.
 */
import { ProtoDecodeError, WIRE } from './wire';

/** Field number -> keep it whole (`true`), or keep the sub-message with only the fields of a nested plan. */
export type FieldPlan = ReadonlyMap<number, true | FieldPlan>;

interface Frame {
  plan: FieldPlan;
  /** Where this message ends, counted from the start of the outermost one. */
  end: number;
  out: Buffer[];
  /** The key bytes of the field that opened this frame (written before its new length). */
  key?: Buffer;
}

/** What the next bytes are: a key, a length or varint value, or the body of a value being kept or skipped. */
const enum State {
  Key,
  Length,
  Varint,
  Keep,
  Skip,
}

const MAX_VARINT_BYTES = 10;

export class MessageSieve {
  private readonly stack: Frame[];
  private frame: Frame;
  private state = State.Key;
  /** Bytes of the outermost message taken so far. */
  private offset = 0;
  /** A varint split across chunks: its bytes so far. */
  private split: number[] = [];
  private field = 0;
  /** The current field's key bytes (kept fields only) and whether its value is kept. */
  private key: Buffer | undefined;
  private keepValue = false;
  /** Bytes left in the current kept or skipped value. */
  private valueLeft = 0;
  private result_: Buffer | undefined;

  constructor(plan: FieldPlan, readonly length: number) {
    this.frame = { plan, end: length, out: [] };
    this.stack = [this.frame];
    if (length === 0) this.result_ = Buffer.alloc(0);
  }

  get done(): boolean {
    return this.result_ !== undefined;
  }

  /** Bytes of the message taken so far. */
  get received(): number {
    return this.offset;
  }

  /** The message without the fields the plan leaves out; once done. */
  result(): Buffer {
    if (!this.result_) throw new Error('the message is not complete yet');
    return this.result_;
  }

  /** Takes bytes from `chunk[start..]`, at most what the message still lacks; returns how many it took. */
  push(chunk: Buffer, start = 0): number {
    const stop = Math.min(chunk.length, start + this.length - this.offset);
    let pos = start;
    while (pos < stop && !this.result_) {
      if (this.state === State.Keep || this.state === State.Skip) {
        const n = Math.min(this.valueLeft, stop - pos);
        if (this.state === State.Keep) this.frame.out.push(Buffer.from(chunk.subarray(pos, pos + n)));
        pos += n;
        this.offset += n;
        this.valueLeft -= n;
        if (this.valueLeft === 0) this.fieldDone();
        continue;
      }
      // A varint (key, length or value): read at once when it is whole in this chunk, else byte by byte.
      const from = pos;
      let v = 0;
      let mul = 1;
      let whole = false;
      if (this.split.length === 0) {
        for (let i = 0; i < MAX_VARINT_BYTES && pos < stop; i++) {
          const b = chunk[pos++];
          v += (b & 0x7f) * mul;
          mul *= 0x80;
          if (b < 0x80) {
            whole = true;
            break;
          }
        }
        if (!whole && pos - from >= MAX_VARINT_BYTES) throw new ProtoDecodeError('varint longer than 10 bytes');
        this.offset += pos - from;
        if (!whole) {
          for (let i = from; i < pos; i++) this.split.push(chunk[i]);
          this.checkNotPastEnd('truncated varint');
          continue;
        }
        this.varint(v, chunk, from, pos);
      } else {
        const b = chunk[pos++];
        this.offset++;
        this.split.push(b);
        if (this.split.length > MAX_VARINT_BYTES) throw new ProtoDecodeError('varint longer than 10 bytes');
        if (b >= 0x80) {
          this.checkNotPastEnd('truncated varint');
          continue;
        }
        const raw = Buffer.from(this.split);
        this.split = [];
        for (let i = 0; i < raw.length; i++) {
          v += (raw[i] & 0x7f) * mul;
          mul *= 0x80;
        }
        this.varint(v, raw, 0, raw.length);
      }
    }
    return pos - start;
  }

  private checkNotPastEnd(what: string): void {
    if (this.offset >= this.frame.end) throw new ProtoDecodeError(what);
  }

  /** A whole varint `v`, whose bytes are `bytes[from..to]`, in the current state. */
  private varint(v: number, bytes: Buffer, from: number, to: number): void {
    if (this.state !== State.Varint && !Number.isSafeInteger(v)) throw new ProtoDecodeError('a key or length beyond 2^53');
    if (this.offset > this.frame.end) throw new ProtoDecodeError('a field runs past the end of its message');
    const frame = this.frame;
    if (this.state === State.Key) {
      this.field = Math.floor(v / 8);
      const wire = v % 8;
      if (this.field === 0) throw new ProtoDecodeError('field number 0');
      const plan = frame.plan.get(this.field);
      this.keepValue = plan !== undefined;
      this.key = plan !== undefined ? Buffer.from(bytes.subarray(from, to)) : undefined;
      const left = frame.end - this.offset;
      if (wire === WIRE.VARINT || wire === WIRE.LEN) {
        if (left <= 0) throw new ProtoDecodeError(`field ${this.field}: truncated`);
        if (wire === WIRE.VARINT && this.key) frame.out.push(this.key);
        this.state = wire === WIRE.VARINT ? State.Varint : State.Length;
      } else if (wire === WIRE.I64 || wire === WIRE.I32) {
        this.valueLeft = wire === WIRE.I64 ? 8 : 4;
        if (this.valueLeft > left) throw new ProtoDecodeError(`field ${this.field}: truncated`);
        if (this.key) frame.out.push(this.key);
        this.state = this.keepValue ? State.Keep : State.Skip;
      } else throw new ProtoDecodeError(`field ${this.field}: unsupported wire type ${wire}`);
      return;
    }
    if (this.state === State.Varint) {
      if (this.keepValue) frame.out.push(Buffer.from(bytes.subarray(from, to)));
      return this.fieldDone();
    }
    // A length: keep the value verbatim, skip it, or read it as a sub-message with its own plan.
    if (v > frame.end - this.offset) throw new ProtoDecodeError(`field ${this.field}: length ${v} runs past the end of the message`);
    const plan = frame.plan.get(this.field);
    if (plan !== undefined && plan !== true) {
      this.frame = { plan, end: this.offset + v, out: [], key: this.key };
      this.stack.push(this.frame);
      this.state = State.Key;
      if (v === 0) this.fieldDone();
      return;
    }
    if (plan === true) frame.out.push(this.key!, Buffer.from(bytes.subarray(from, to)));
    this.valueLeft = v;
    this.state = plan === true ? State.Keep : State.Skip;
    if (v === 0) this.fieldDone();
  }

  /** A field ended: close every sub-message that ended with it, and the message itself. */
  private fieldDone(): void {
    this.state = State.Key;
    for (;;) {
      const frame = this.frame;
      if (this.offset < frame.end) return;
      if (this.offset > frame.end) throw new ProtoDecodeError('a field runs past the end of its message');
      const body = Buffer.concat(frame.out);
      this.stack.pop();
      if (this.stack.length === 0) {
        this.result_ = body;
        return;
      }
      this.frame = this.stack[this.stack.length - 1];
      this.frame.out.push(frame.key!, varintBytes(body.length), body);
    }
  }
}

function varintBytes(v: number): Buffer {
  const out: number[] = [];
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return Buffer.from(out);
}
