// Consumer-group membership, bit-exact with the server: a stream belongs to member
// abs(hash_64(cardinal id)) % size, where hash_64 is the first 8 bytes of the MD5 of the
// cardinal id (the stream id up to its first "+") read as a signed big-endian 64-bit integer.
// Streams without an id (no "-") belong to no member. Browsers have no MD5 built in, hence the
// small implementation below (RFC 1321).

const SHIFTS = [
  7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
  5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
  4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
  6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
];
const SINES = Array.from({ length: 64 }, (_, i) => Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32));

/** MD5 digest (16 bytes) of some bytes. */
export function md5(bytes) {
  const length = bytes.length;
  const blocks = Math.floor((length + 8) / 64) + 1;
  const words = new Uint32Array(blocks * 16);
  for (let i = 0; i < length; i++) words[i >> 2] |= bytes[i] << ((i % 4) * 8);
  words[length >> 2] |= 0x80 << ((length % 4) * 8);
  words[words.length - 2] = (length * 8) >>> 0;
  words[words.length - 1] = Math.floor(length / 0x20000000);
  let a0 = 0x67452301;
  let b0 = 0xefcdab89;
  let c0 = 0x98badcfe;
  let d0 = 0x10325476;
  for (let block = 0; block < words.length; block += 16) {
    let [a, b, c, d] = [a0, b0, c0, d0];
    for (let i = 0; i < 64; i++) {
      let f;
      let g;
      if (i < 16) {
        f = (b & c) | (~b & d);
        g = i;
      } else if (i < 32) {
        f = (d & b) | (~d & c);
        g = (5 * i + 1) % 16;
      } else if (i < 48) {
        f = b ^ c ^ d;
        g = (3 * i + 5) % 16;
      } else {
        f = c ^ (b | ~d);
        g = (7 * i) % 16;
      }
      f = (f + a + SINES[i] + words[block + g]) | 0;
      a = d;
      d = c;
      c = b;
      b = (b + ((f << SHIFTS[i]) | (f >>> (32 - SHIFTS[i])))) | 0;
    }
    a0 = (a0 + a) | 0;
    b0 = (b0 + b) | 0;
    c0 = (c0 + c) | 0;
    d0 = (d0 + d) | 0;
  }
  const digest = new Uint8Array(16);
  [a0, b0, c0, d0].forEach((word, i) => {
    for (let k = 0; k < 4; k++) digest[i * 4 + k] = (word >>> (8 * k)) & 0xff;
  });
  return digest;
}

/** Message DB's hash_64 of a text, as a BigInt. */
export function hash64(text) {
  const digest = md5(new TextEncoder().encode(text));
  let value = 0n;
  for (let i = 0; i < 8; i++) value = (value << 8n) | BigInt(digest[i]);
  return BigInt.asIntN(64, value);
}

/** The category of a stream: the text before its first "-". */
export function categoryOf(streamName) {
  const dash = streamName.indexOf("-");
  return dash < 0 ? streamName : streamName.slice(0, dash);
}

/** The member of a group of `size` that consumes `streamName`, or null when none does. */
export function memberOf(streamName, size) {
  const dash = streamName.indexOf("-");
  if (dash < 0) return null;
  const cardinalId = streamName.slice(dash + 1).split("+")[0];
  const hash = hash64(cardinalId);
  return Number((hash < 0n ? -hash : hash) % BigInt(size));
}
