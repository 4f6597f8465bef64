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

/* One Keccak-f[1600] round on the state in 25 locals, a{x}{y} = lane x + 5y (FIPS 202
 * section 3.2): theta (column parities c, d), rho and pi (b[y][2x + 3y] = rot(a[x][y] ^ d[x],
 * r[x][y]) with the offsets of FIPS 202 Table 2) and chi, written out lane by lane so the
 * compiler keeps the state in registers (measured 2x the table-driven loop); iota is the
 * caller's. Generic in ROTL: one state (uint64_t) or four (lanes4). */
#define KECCAK_ROUND(ROTL) do { \
    c0 = a00 ^ a01 ^ a02 ^ a03 ^ a04; \
    c1 = a10 ^ a11 ^ a12 ^ a13 ^ a14; \
    c2 = a20 ^ a21 ^ a22 ^ a23 ^ a24; \
    c3 = a30 ^ a31 ^ a32 ^ a33 ^ a34; \
    c4 = a40 ^ a41 ^ a42 ^ a43 ^ a44; \
    d0 = c4 ^ ROTL(c1, 1); \
    d1 = c0 ^ ROTL(c2, 1); \
    d2 = c1 ^ ROTL(c3, 1); \
    d3 = c2 ^ ROTL(c4, 1); \
    d4 = c3 ^ ROTL(c0, 1); \
    b00 = ROTL(a00 ^ d0, 0); \
    b13 = ROTL(a01 ^ d0, 36); \
    b21 = ROTL(a02 ^ d0, 3); \
    b34 = ROTL(a03 ^ d0, 41); \
    b42 = ROTL(a04 ^ d0, 18); \
    b02 = ROTL(a10 ^ d1, 1); \
    b10 = ROTL(a11 ^ d1, 44); \
    b23 = ROTL(a12 ^ d1, 10); \
    b31 = ROTL(a13 ^ d1, 45); \
    b44 = ROTL(a14 ^ d1, 2); \
    b04 = ROTL(a20 ^ d2, 62); \
    b12 = ROTL(a21 ^ d2, 6); \
    b20 = ROTL(a22 ^ d2, 43); \
    b33 = ROTL(a23 ^ d2, 15); \
    b41 = ROTL(a24 ^ d2, 61); \
    b01 = ROTL(a30 ^ d3, 28); \
    b14 = ROTL(a31 ^ d3, 55); \
    b22 = ROTL(a32 ^ d3, 25); \
    b30 = ROTL(a33 ^ d3, 21); \
    b43 = ROTL(a34 ^ d3, 56); \
    b03 = ROTL(a40 ^ d4, 27); \
    b11 = ROTL(a41 ^ d4, 20); \
    b24 = ROTL(a42 ^ d4, 39); \
    b32 = ROTL(a43 ^ d4, 8); \
    b40 = ROTL(a44 ^ d4, 14); \
    a00 = b00 ^ (~b10 & b20); \
    a01 = b01 ^ (~b11 & b21); \
    a02 = b02 ^ (~b12 & b22); \
    a03 = b03 ^ (~b13 & b23); \
    a04 = b04 ^ (~b14 & b24); \
    a10 = b10 ^ (~b20 & b30); \
    a11 = b11 ^ (~b21 & b31); \
    a12 = b12 ^ (~b22 & b32); \
    a13 = b13 ^ (~b23 & b33); \
    a14 = b14 ^ (~b24 & b34); \
    a20 = b20 ^ (~b30 & b40); \
    a21 = b21 ^ (~b31 & b41); \
    a22 = b22 ^ (~b32 & b42); \
    a23 = b23 ^ (~b33 & b43); \
    a24 = b24 ^ (~b34 & b44); \
    a30 = b30 ^ (~b40 & b00); \
    a31 = b31 ^ (~b41 & b01); \
    a32 = b32 ^ (~b42 & b02); \
    a33 = b33 ^ (~b43 & b03); \
    a34 = b34 ^ (~b44 & b04); \
    a40 = b40 ^ (~b00 & b10); \
    a41 = b41 ^ (~b01 & b11); \
    a42 = b42 ^ (~b02 & b12); \
    a43 = b43 ^ (~b03 & b13); \
    a44 = b44 ^ (~b04 & b14); \
} while (0)

#define ROTL(v, n) ((n) == 0 ? (v) : (((v) << (n)) | ((v) >> (64 - (n)))))

#define KECCAK_F1600(T, s, IOTA) do { \
    T a00 = s[0], a10 = s[1], a20 = s[2], a30 = s[3], a40 = s[4], a01 = s[5], a11 = s[6], a21 = \
        s[7], a31 = s[8], a41 = s[9], a02 = s[10], a12 = s[11], a22 = s[12], a32 = s[13], a42 = \
        s[14], a03 = s[15], a13 = s[16], a23 = s[17], a33 = s[18], a43 = s[19], a04 = s[20], a14 = \
        s[21], a24 = s[22], a34 = s[23], a44 = s[24]; \
    T b00, b01, b02, b03, b04, b10, b11, b12, b13, b14, b20, b21, b22, b23, b24, b30, b31, b32, \
        b33, b34, b40, b41, b42, b43, b44, c0, c1, c2, c3, c4, d0, d1, d2, d3, d4; \
    for (int round = 0; round < 24; round++) { \
        KECCAK_ROUND(ROTL); \
        a00 ^= IOTA(ROUND_CONSTANTS[round]); \
    } \
    s[0] = a00; s[1] = a10; s[2] = a20; s[3] = a30; s[4] = a40; s[5] = a01; s[6] = a11; s[7] = \
        a21; s[8] = a31; s[9] = a41; s[10] = a02; s[11] = a12; s[12] = a22; s[13] = a32; s[14] = \
        a42; s[15] = a03; s[16] = a13; s[17] = a23; s[18] = a33; s[19] = a43; s[20] = a04; s[21] = \
        a14; s[22] = a24; s[23] = a34; s[24] = a44; \
} while (0)

#define SCALAR_CONSTANT(k) (k)
static void keccak_f1600(uint64_t s[25]) { KECCAK_F1600(uint64_t, s, SCALAR_CONSTANT); }

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
 * (one AVX2 register, or two SSE2 registers: about 0.55 us a stream with AVX2 on the Zen 2,
 * 1.1 us with SSE2, against 2.4 us for one stream at a time with the table-driven loop). The streams of one call differ only in their index, so this is the verifier's case;
 * a message longer than one block takes the one-stream path. */
typedef uint64_t lanes4 __attribute__((vector_size(32)));

/* x86-64: an AVX2 clone beside the baseline SSE2 one, picked when the library loads */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define X4_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define X4_CLONES
#endif

#define LANES4_CONSTANT(k) ((lanes4){(k), (k), (k), (k)})
X4_CLONES static void keccak_f1600_x4(lanes4 s[25]) {
    KECCAK_F1600(lanes4, s, LANES4_CONSTANT);
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
