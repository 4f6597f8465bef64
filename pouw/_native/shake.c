/* SHAKE-256 streams for the verifier (docs/pouw.md §4, §9): stream i is
 * SHAKE-256(prefix || i as 8 bytes big-endian), `length` bytes of it, for i in
 * [first, first + count). A verifier draws one stream per replayed chunk and side (258 at the
 * worst case, k = 4096, r = 32, chunk 127); through hashlib each costs a state copy, an update
 * and a digest call, about 2.4 us of interpreter and call overhead over ~0.6 us of Keccak.
 * Here they run in one call. pouw.hashing.xof_streams falls back to hashlib when this library
 * is absent; the tests compare the two byte for byte.
 *
 * Keccak-f[1600] as specified in FIPS 202 (theta, rho and pi, chi, iota over 24 rounds);
 * lanes are read and written little-endian byte by byte, so the code is endian-neutral.
 * Loaded with ctypes, like fused.c; PyInit only makes it a well-formed extension module.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define SHAKE256_RATE 136 /* bytes: 1600 - 2 * 256 bits of capacity */

static const uint64_t ROUND_CONSTANTS[24] = {
    0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808aULL,
    0x8000000080008000ULL, 0x000000000000808bULL, 0x0000000080000001ULL,
    0x8000000080008081ULL, 0x8000000000008009ULL, 0x000000000000008aULL,
    0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000aULL,
    0x000000008000808bULL, 0x800000000000008bULL, 0x8000000000008089ULL,
    0x8000000000008003ULL, 0x8000000000008002ULL, 0x8000000000000080ULL,
    0x000000000000800aULL, 0x800000008000000aULL, 0x8000000080008081ULL,
    0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL,
};

/* rho offsets r[x][y] and the pi step B[y][2x+3y] = rot(A[x][y], r[x][y]), lane index x + 5y */
static const int RHO[25] = {
    0, 1, 62, 28, 27,
    36, 44, 6, 55, 20,
    3, 10, 43, 25, 39,
    41, 45, 15, 21, 8,
    18, 2, 61, 56, 14,
};

static inline uint64_t rotl64(uint64_t v, int s) {
    return s == 0 ? v : (v << s) | (v >> (64 - s));
}

/* the pi step's destination of lane x + 5y: y + 5 * ((2x + 3y) mod 5) */
static const int PI_DEST[25] = {
    0, 10, 20, 5, 15,
    16, 1, 11, 21, 6,
    7, 17, 2, 12, 22,
    23, 8, 18, 3, 13,
    14, 24, 9, 19, 4,
};

static void keccak_f1600(uint64_t a[25]) {
    uint64_t b[25], c[5], d[5];
    for (int round = 0; round < 24; round++) {
#pragma GCC unroll 5
        for (int x = 0; x < 5; x++)  /* theta */
            c[x] = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20];
        d[0] = c[4] ^ rotl64(c[1], 1);
        d[1] = c[0] ^ rotl64(c[2], 1);
        d[2] = c[1] ^ rotl64(c[3], 1);
        d[3] = c[2] ^ rotl64(c[4], 1);
        d[4] = c[3] ^ rotl64(c[0], 1);
#pragma GCC unroll 25
        for (int i = 0; i < 25; i++)  /* theta's column parity, then rho and pi */
            b[PI_DEST[i]] = rotl64(a[i] ^ d[i % 5], RHO[i]);
#pragma GCC unroll 5
        for (int y = 0; y < 25; y += 5) {  /* chi */
            a[y + 0] = b[y + 0] ^ (~b[y + 1] & b[y + 2]);
            a[y + 1] = b[y + 1] ^ (~b[y + 2] & b[y + 3]);
            a[y + 2] = b[y + 2] ^ (~b[y + 3] & b[y + 4]);
            a[y + 3] = b[y + 3] ^ (~b[y + 4] & b[y + 0]);
            a[y + 4] = b[y + 4] ^ (~b[y + 0] & b[y + 1]);
        }
        a[0] ^= ROUND_CONSTANTS[round];  /* iota */
    }
}

static void xor_byte(uint64_t st[25], int64_t pos, uint8_t v) {
    st[pos / 8] ^= (uint64_t)v << (8 * (pos % 8));
}

/* One stream: absorb prefix || index (big-endian, 8 bytes), pad (SHAKE: 0x1F ... 0x80),
 * squeeze `length` bytes into out. */
static void shake256_stream(const uint8_t *prefix, int64_t prefix_len, uint64_t index,
                            int64_t length, uint8_t *out) {
    uint64_t st[25];
    memset(st, 0, sizeof st);
    uint8_t suffix[8];
    for (int i = 0; i < 8; i++) suffix[i] = (uint8_t)(index >> (56 - 8 * i));
    int64_t pos = 0;
    for (int64_t i = 0; i < prefix_len + 8; i++) {
        xor_byte(st, pos, i < prefix_len ? prefix[i] : suffix[i - prefix_len]);
        if (++pos == SHAKE256_RATE) {
            keccak_f1600(st);
            pos = 0;
        }
    }
    xor_byte(st, pos, 0x1F);
    xor_byte(st, SHAKE256_RATE - 1, 0x80);
    keccak_f1600(st);
    pos = 0;
    for (int64_t i = 0; i < length; i++) {
        if (pos == SHAKE256_RATE) {
            keccak_f1600(st);
            pos = 0;
        }
        out[i] = (uint8_t)(st[pos / 8] >> (8 * (pos % 8)));
        pos++;
    }
}

/* Four streams at once: Keccak-f[1600] on four states, one per 64-bit lane of a GCC vector
 * (two SSE2 registers on x86-64: measured 2x the one-stream loop; -mavx2 gained nothing
 * more). The streams of one call differ only in their index, so this is the verifier's case;
 * a message longer than one block takes the one-stream path. */
typedef uint64_t lanes4 __attribute__((vector_size(32)));

static inline lanes4 rotl4(lanes4 v, int s) {
    return s == 0 ? v : (v << s) | (v >> (64 - s));
}

static void keccak_f1600_x4(lanes4 a[25]) {
    lanes4 b[25], c[5], d[5];
    for (int round = 0; round < 24; round++) {
#pragma GCC unroll 5
        for (int x = 0; x < 5; x++)
            c[x] = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20];
        d[0] = c[4] ^ rotl4(c[1], 1);
        d[1] = c[0] ^ rotl4(c[2], 1);
        d[2] = c[1] ^ rotl4(c[3], 1);
        d[3] = c[2] ^ rotl4(c[4], 1);
        d[4] = c[3] ^ rotl4(c[0], 1);
#pragma GCC unroll 25
        for (int i = 0; i < 25; i++)
            b[PI_DEST[i]] = rotl4(a[i] ^ d[i % 5], RHO[i]);
#pragma GCC unroll 5
        for (int y = 0; y < 25; y += 5) {
            a[y + 0] = b[y + 0] ^ (~b[y + 1] & b[y + 2]);
            a[y + 1] = b[y + 1] ^ (~b[y + 2] & b[y + 3]);
            a[y + 2] = b[y + 2] ^ (~b[y + 3] & b[y + 4]);
            a[y + 3] = b[y + 3] ^ (~b[y + 4] & b[y + 0]);
            a[y + 4] = b[y + 4] ^ (~b[y + 0] & b[y + 1]);
        }
        a[0] ^= (lanes4){ROUND_CONSTANTS[round], ROUND_CONSTANTS[round],
                         ROUND_CONSTANTS[round], ROUND_CONSTANTS[round]};
    }
}

static uint64_t load_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Four consecutive streams from `first` (the message prefix || index fits one block). */
static void shake256_streams_x4(const uint8_t *prefix, int64_t prefix_len, uint64_t first,
                                int64_t length, uint8_t *out[4]) {
    uint8_t block[4][SHAKE256_RATE];
    lanes4 st[25];
    memset(st, 0, sizeof st);
    for (int s = 0; s < 4; s++) {
        uint64_t index = first + (uint64_t)s;
        memset(block[s], 0, SHAKE256_RATE);
        memcpy(block[s], prefix, (size_t)prefix_len);
        for (int i = 0; i < 8; i++) block[s][prefix_len + i] = (uint8_t)(index >> (56 - 8 * i));
        block[s][prefix_len + 8] ^= 0x1F;
        block[s][SHAKE256_RATE - 1] ^= 0x80;
    }
    for (int i = 0; i < SHAKE256_RATE / 8; i++)
        st[i] = (lanes4){load_le64(block[0] + 8 * i), load_le64(block[1] + 8 * i),
                         load_le64(block[2] + 8 * i), load_le64(block[3] + 8 * i)};
    keccak_f1600_x4(st);
    int64_t pos = 0;
    for (int64_t i = 0; i < length; i++) {
        if (pos == SHAKE256_RATE) {
            keccak_f1600_x4(st);
            pos = 0;
        }
        for (int s = 0; s < 4; s++)
            if (out[s] != NULL) out[s][i] = (uint8_t)(st[pos / 8][s] >> (8 * (pos % 8)));
        pos++;
    }
}

/* Streams first .. first + count - 1, `length` bytes each, concatenated into out
 * (count * length bytes). */
void pouw_shake256_streams(const uint8_t *prefix, int64_t prefix_len, uint64_t first,
                           int64_t count, int64_t length, uint8_t *out) {
    int64_t i = 0;
    if (prefix_len + 8 < SHAKE256_RATE) {  /* prefix, index and the 0x1F pad in one block */
        for (; i + 4 <= count; i += 4) {
            uint8_t *dest[4] = {out + i * length, out + (i + 1) * length,
                                out + (i + 2) * length, out + (i + 3) * length};
            shake256_streams_x4(prefix, prefix_len, first + (uint64_t)i, length, dest);
        }
    }
    for (; i < count; i++)
        shake256_stream(prefix, prefix_len, first + (uint64_t)i, length, out + i * length);
}

static struct PyModuleDef shake_module = {PyModuleDef_HEAD_INIT, "_shake",
                                          "SHAKE-256 streams (loaded through ctypes).", -1,
                                          NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__shake(void) { return PyModule_Create(&shake_module); }
