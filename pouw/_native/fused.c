/* Fused PoUW mining kernel: the r-deep chunk products, the 8x4 tile XOR folds and the
 * ticket-state mixer in one pass, accumulators kept in registers (docs/pouw.md §6, §11).
 *
 * Inputs are prepared once per job by pouw_pack_b (B' in 32-column blocks of 4-deep k
 * groups, plus the per-chunk bias compensation) and by the caller (A' biased to uint8 by
 * XOR 0x80, i.e. a + 128). The products are u8 x s8 dot products (VNNI vpdpbusd); the
 * accumulator of column j after chunk c is biased by 128 * sum_{k < (c+1)r} B'[k][j], which
 * comp[c][j] removes before folding. All integer arithmetic wraps modulo 2^32 / 2^64, and the
 * true values fit int32 (docs/pouw.md §1), so the folds equal the reference bit for bit.
 *
 * The module is loaded with ctypes (the GIL is released during calls); PyInit only makes it a
 * well-formed extension module for setuptools.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define POUW_X86 1
#endif

#define TILE_H 8
#define TILE_W 4
#define BLOCK_COLS 32                 /* 8 tiles of 4 columns: two 16-lane int32 vectors */
#define TILES_PER_BLOCK (BLOCK_COLS / TILE_W)
#define STEP_BYTES (BLOCK_COLS * 4)   /* one 4-deep k group of a column block */
#define K_CHUNK 0x165667b19e3779f9ULL

/* The denoising products of docs/pouw.md §7, done in the kernel's registers after the last
 * chunk: out = A'B' - sum_l 128^l Left_l Right_l. left: (limbs, rows_total, depth) uint8
 * (Left_l + 128), right: limbs blocks packed by pouw_pack_b with r = depth, comp: (limbs,
 * npad) their bias compensation. limbs = 0: no denoising (out = A'B'). */
typedef struct {
    const uint8_t *left;
    const int8_t *right;
    const uint32_t *comp;
    int64_t limbs;
    int64_t depth;
    int64_t rows_total;
    int64_t row0;
} denoise_args;

typedef struct {
    int32_t tile_row;
    int32_t tile_col;
    int32_t chunk;
    int32_t pad;
    uint64_t state;
} pouw_candidate;

static int64_t column_blocks(int64_t n) { return (n + BLOCK_COLS - 1) / BLOCK_COLS; }

/* Scheduling: the kernels hand out (row panel, column block) pairs dynamically, one at a time:
 * on a shared machine a thread that is descheduled mid-loop would otherwise hold up the whole
 * region with its static share (measured on the loaded 2-vCPU build machine, docs §11).
 * Cache blocking: the kernels walk row panels of A small enough to stay in L2 (about
 * PANEL_BYTES of A' rows), and within a panel every column block of B', so A' is read from
 * memory once and each B' block (k x 32 bytes) once per panel, instead of all of A' once per
 * column block. Returns the row blocks (of `block_rows` rows) per panel. */
#ifndef POUW_PANEL_BYTES
#define POUW_PANEL_BYTES (512 * 1024)
#endif
static int64_t panel_blocks(int64_t k, int64_t block_rows, int64_t row_blocks) {
    int64_t per = POUW_PANEL_BYTES / (block_rows * k);
    if (per < 1) per = 1;
    return per < row_blocks ? per : (row_blocks > 0 ? row_blocks : 1);
}

/* bp[cb][k/4][32][4] = B'[4g + q][32cb + j] (zero past n); comp[c][j] = 128 * column sums of
 * B' over chunks 0..c (as uint32, wrapping like the accumulators). */
void pouw_pack_b(const int8_t *b, int64_t k, int64_t n, int64_t r, int8_t *bp, uint32_t *comp) {
    const int64_t nb = column_blocks(n), npad = nb * BLOCK_COLS, groups = k / 4;
/* single-threaded: memory-bound, and short parallel regions cost more than they save */
    for (int64_t cb = 0; cb < nb; cb++) {
        int8_t *dst = bp + cb * groups * STEP_BYTES;
        const int64_t live = n - cb * BLOCK_COLS < BLOCK_COLS ? n - cb * BLOCK_COLS : BLOCK_COLS;
        for (int64_t g = 0; g < groups; g++) {
            for (int64_t q = 0; q < 4; q++) {
                const int8_t *row = b + (4 * g + q) * n + cb * BLOCK_COLS;
                for (int64_t j = 0; j < BLOCK_COLS; j++)
                    dst[g * STEP_BYTES + j * 4 + q] = j < live ? row[j] : 0;
            }
        }
        int64_t sums[BLOCK_COLS] = {0};
        for (int64_t c = 0; c < k / r; c++) {
            for (int64_t kk = c * r; kk < (c + 1) * r; kk++)
                for (int64_t j = 0; j < BLOCK_COLS; j++) {
                    const int64_t col = cb * BLOCK_COLS + j;
                    sums[j] += col < n ? b[kk * n + col] : 0;
                }
            for (int64_t j = 0; j < BLOCK_COLS; j++)
                comp[c * npad + cb * BLOCK_COLS + j] = (uint32_t)(128 * sums[j]);
        }
    }
}

int pouw_best_isa(void);

/* Operand bytes below which the noise passes run on the calling thread: a parallel region
 * costs a thread wake-up, which on a loaded machine outweighs a pass over a small operand. */
#define POUW_PARALLEL_MIN (1 << 21)

/* One row of the left noise pass: wide = A'[i, :] as int32 (A' = A + E; E's entry x is entry
 * idx_e[x] of the row doubled = [E_L[i, :], -E_L[i, :]]), out = A' + 128, and
 * Y[i, q] = sum_c gsign[c r + q] * A'[i, gidx[c r + q]], i.e. Y = A'·F_L read through the
 * inverse of F's permutations (a gather, not a scatter, so it vectorises). */
static void noisy_left_row(const int8_t *ai, int64_t k, int64_t r, const int32_t *doubled,
                           const int32_t *idx_e, const int32_t *gidx, const int32_t *gsign,
                           uint8_t *oi, int32_t *wide, int32_t *yi) {
    for (int64_t x = 0; x < k; x++) {
        wide[x] = (int32_t)ai[x] + doubled[idx_e[x]];
        oi[x] = (uint8_t)(wide[x] + 128);
    }
    for (int64_t q = 0; q < r; q++) yi[q] = 0;
    for (int64_t c = 0; c < k / r; c++)
        for (int64_t q = 0; q < r; q++) yi[q] += gsign[c * r + q] * wide[gidx[c * r + q]];
}

#ifdef POUW_X86
__attribute__((target("avx512f,avx512bw,avx512vl")))
static void noisy_left_row_avx512(const int8_t *ai, int64_t k, int64_t r, const int32_t *doubled,
                                  const int32_t *idx_e, const int32_t *gidx,
                                  const int32_t *gsign, uint8_t *oi, int32_t *wide,
                                  int32_t *yi) {
    const __m512i bias = _mm512_set1_epi32(128), zero = _mm512_setzero_si512();
    for (int64_t x = 0; x < k; x += 16) {
        const __m512i v = _mm512_add_epi32(
            _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(ai + x))),
            _mm512_i32gather_epi32(_mm512_loadu_si512(idx_e + x), doubled, 4));
        _mm512_storeu_si512(wide + x, v);
        _mm_storeu_si128((__m128i *)(oi + x), _mm512_cvtepi32_epi8(_mm512_add_epi32(v, bias)));
    }
    for (int64_t q = 0; q < r; q += 16) {
        __m512i acc = zero;
        for (int64_t c = 0; c < k / r; c++) {
            const __m512i g = _mm512_i32gather_epi32(_mm512_loadu_si512(gidx + c * r + q), wide, 4);
            const __mmask16 neg = _mm512_cmplt_epi32_mask(_mm512_loadu_si512(gsign + c * r + q), zero);
            acc = _mm512_mask_sub_epi32(_mm512_add_epi32(acc, g), neg, acc, g);
        }
        _mm512_storeu_si512(yi + q, acc);
    }
}
#endif

/* The noise phase of docs/pouw.md §5-7 on the left operand, one pass over A (rows in
 * parallel): A' + 128 (the kernels' uint8 left operand) and Y = A'·F_L. E_L's doubled row and
 * A''s widened row stay in L1; no E or F_L matrix exists. isa: as pouw_fused's (AVX-512
 * gathers from 2 up, the portable loop below). */
void pouw_noisy_left(const int8_t *a, int64_t m, int64_t k, int64_t r, const int8_t *el,
                     const int32_t *idx_e, const int32_t *gidx, const int32_t *gsign,
                     uint8_t *a_biased, int32_t *y, int isa) {
    const int best = pouw_best_isa();
    const int vector = (isa < 0 ? best : (isa < best ? isa : best)) >= 2 && r % 16 == 0;
#pragma omp parallel if (m * k >= POUW_PARALLEL_MIN)
    {
        int32_t *doubled = (int32_t *)malloc((size_t)(2 * r) * sizeof(int32_t));
        int32_t *wide = (int32_t *)malloc((size_t)k * sizeof(int32_t));
#pragma omp for schedule(static)
        for (int64_t i = 0; i < m; i++) {
            for (int64_t j = 0; j < r; j++) {
                doubled[j] = el[i * r + j];
                doubled[r + j] = -(int32_t)el[i * r + j];
            }
#ifdef POUW_X86
            if (vector) {
                noisy_left_row_avx512(a + i * k, k, r, doubled, idx_e, gidx, gsign,
                                      a_biased + i * k, wide, y + i * r);
                continue;
            }
#endif
            noisy_left_row(a + i * k, k, r, doubled, idx_e, gidx, gsign, a_biased + i * k, wide,
                           y + i * r);
        }
        free(wide);
        free(doubled);
    }
    (void)vector;
}

/* The same on the right operand: B' = B + F, F[i, :] = sign_f[i]·F_R[perm_f[i], :], written
 * straight into the kernels' layout with its bias compensation (as pouw_pack_b lays B' out),
 * and Z = E_R·B, Z[perm_e[i], :] += sign_e[i]·B[i, :]. Each thread owns a range of column
 * blocks and reads B row by row (contiguous), four rows at a time (one 4-deep k group);
 * z must be zeroed by the caller. */
void pouw_noisy_right(const int8_t *b, int64_t k, int64_t n, int64_t r, const int8_t *fr,
                      const int32_t *perm_f, const int8_t *sign_f, const int32_t *perm_e,
                      const int8_t *sign_e, int8_t *bp, uint32_t *comp, int32_t *z) {
    const int64_t nb = column_blocks(n), npad = nb * BLOCK_COLS, groups = k / 4;
#pragma omp parallel if (k * n >= POUW_PARALLEL_MIN)
    {
        int64_t tid = 0, nth = 1;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        nth = omp_get_num_threads();
#endif
        const int64_t cb0 = nb * tid / nth, cb1 = nb * (tid + 1) / nth;
        const int64_t col0 = cb0 * BLOCK_COLS, width = (cb1 - cb0) * BLOCK_COLS;
        const int64_t live = (cb1 * BLOCK_COLS < n ? cb1 * BLOCK_COLS : n) - col0;
        int32_t *sums = (int32_t *)calloc((size_t)(width > 0 ? width : 1), sizeof(int32_t));
        int8_t *quad = (int8_t *)calloc((size_t)(4 * width > 0 ? 4 * width : 1), 1);
        for (int64_t g = 0; g < groups && width > 0; g++) {
            for (int64_t q = 0; q < 4; q++) {
                const int64_t i = 4 * g + q;
                const int8_t *brow = b + i * n + col0;
                const int8_t *frow = fr + (int64_t)perm_f[i] * n + col0;
                int32_t *zrow = z + (int64_t)perm_e[i] * n + col0;
                const int32_t sf = sign_f[i], se = sign_e[i];
                int8_t *qrow = quad + q * width;
                for (int64_t j = 0; j < live; j++) {
                    const int32_t v = (int32_t)brow[j] + sf * (int32_t)frow[j];
                    qrow[j] = (int8_t)v;
                    sums[j] += v;
                    zrow[j] += se * (int32_t)brow[j];
                }
            }
            for (int64_t cb = cb0; cb < cb1; cb++) {
                int8_t *dst = bp + cb * groups * STEP_BYTES + g * STEP_BYTES;
                const int64_t off = (cb - cb0) * BLOCK_COLS;
                for (int j = 0; j < BLOCK_COLS; j++)
                    for (int q = 0; q < 4; q++) dst[j * 4 + q] = quad[q * width + off + j];
            }
            if ((4 * g + 4) % r == 0) {
                const int64_t c = (4 * g + 4) / r - 1;
                for (int64_t j = 0; j < width; j++)
                    comp[c * npad + col0 + j] = (uint32_t)(128 * sums[j]);
            }
        }
        free(quad);
        free(sums);
    }
}

/* Digit l of x in balanced base 128 (digits in [-64, 63], lowest first; pouw.noise.split_limbs). */
static inline int32_t limb_digit(int32_t x, int64_t l, int64_t limbs, int *overflow) {
    int64_t rest = x;
    int32_t digit = 0;
    for (int64_t j = 0; j <= l; j++) {
        digit = (int32_t)(((rest + 64) & 127) - 64);
        rest = (rest - digit) / 128; /* an exact multiple of 128: exact for negatives too */
    }
    if (l == limbs - 1 && rest != 0) *overflow = 1;
    return digit;
}

/* The denoising operands of docs/pouw.md §7 straight into the kernels' layouts, from Y (m x r),
 * E_L (m x r), Z (r x n) and F_R (r x n): left (limbs, m, 2r) = [Y_l | E_L] + 128 as uint8, and
 * right = each Right_l = [F_R ; Z_l] (2r x n) packed as pouw_pack_b packs B' with one chunk of
 * depth 2r, comp (limbs, npad) its bias compensation. Y_l, Z_l are the base-128 digits.
 * Returns 0, or -1 if a value of Y or Z needs more than `limbs` digits. On the calling thread:
 * a few milliseconds of work, less than a parallel region's wake-up costs on a loaded machine
 * (2048^3, r = 128, load 22: 16 ms on one thread, 41 ms on two). */
int64_t pouw_denoise_operands(const int32_t *y, const int8_t *el, int64_t m, int64_t r,
                              const int32_t *z, const int8_t *fr, int64_t n, int64_t limbs,
                              uint8_t *left, int8_t *right, uint32_t *comp) {
    const int64_t depth = 2 * r, nb = column_blocks(n), npad = nb * BLOCK_COLS;
    const int64_t groups = depth / 4;
    int overflow = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t l = 0; l < limbs; l++) {
            uint8_t *row = left + (l * m + i) * depth;
            for (int64_t q = 0; q < r; q++) {
                row[q] = (uint8_t)(limb_digit(y[i * r + q], l, limbs, &overflow) + 128);
                row[r + q] = (uint8_t)(el[i * r + q] + 128);
            }
        }
    for (int64_t l = 0; l < limbs; l++)
        for (int64_t cb = 0; cb < nb; cb++) {
            int8_t *dst = right + (l * npad + cb * BLOCK_COLS) * depth;
            int32_t sums[BLOCK_COLS] = {0};
            for (int64_t g = 0; g < groups; g++)
                for (int j = 0; j < BLOCK_COLS; j++) {
                    const int64_t col = cb * BLOCK_COLS + j;
                    for (int q = 0; q < 4; q++) {
                        const int64_t row = 4 * g + q;
                        int32_t v = 0;
                        if (col < n)
                            v = row < r ? fr[row * n + col]
                                        : limb_digit(z[(row - r) * n + col], l, limbs, &overflow);
                        dst[g * STEP_BYTES + j * 4 + q] = (int8_t)v;
                        sums[j] += v;
                    }
                }
            for (int j = 0; j < BLOCK_COLS; j++)
                comp[l * npad + cb * BLOCK_COLS + j] = (uint32_t)(128 * sums[j]);
        }
    return overflow ? -1 : 0;
}

static void record(pouw_candidate *cands, int64_t max_cands, int64_t *count, int32_t tile_row,
                   int32_t tile_col, int32_t chunk, uint64_t state) {
    int64_t slot;
#pragma omp atomic capture
    slot = (*count)++;
    if (slot < max_cands) {
        cands[slot].tile_row = tile_row;
        cands[slot].tile_col = tile_col;
        cands[slot].chunk = chunk;
        cands[slot].pad = 0;
        cands[slot].state = state;
    }
}

/* Portable path: the same blocking in plain C (compilers vectorise the inner loops). */
static int64_t fused_generic(const uint8_t *a, const int8_t *bp, const uint32_t *comp,
                             int64_t rows, int64_t k, int64_t n, int64_t r, int64_t row_tile0,
                             uint64_t *states, uint64_t limit, int32_t *out,
                             pouw_candidate *cands, int64_t max_cands, const denoise_args *dn) {
    const int64_t nb = column_blocks(n), npad = nb * BLOCK_COLS, groups = k / 4;
    const int64_t tile_cols = n / TILE_W, row_blocks = rows / TILE_H, chunks = k / r;
    int64_t count = 0;
    const int64_t per_panel = panel_blocks(k, TILE_H, row_blocks);
    const int64_t panels = (row_blocks + per_panel - 1) / per_panel;
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int64_t rp = 0; rp < panels; rp++) {
    for (int64_t cb = 0; cb < nb; cb++) {
        const int64_t rb_end = (rp + 1) * per_panel < row_blocks ? (rp + 1) * per_panel : row_blocks;
        for (int64_t rb = rp * per_panel; rb < rb_end; rb++) {
            uint32_t acc[TILE_H][BLOCK_COLS];
            uint64_t st[TILES_PER_BLOCK];
            memset(acc, 0, sizeof acc);
            for (int t = 0; t < TILES_PER_BLOCK; t++) {
                const int64_t tc = cb * TILES_PER_BLOCK + t;
                st[t] = tc < tile_cols ? states[rb * tile_cols + tc] : 0;
            }
            const int8_t *blk = bp + cb * groups * STEP_BYTES;
            const uint32_t *cc = comp;
            for (int64_t c = 0; c < chunks; c++) {
                for (int64_t g = c * r / 4; g < (c + 1) * r / 4; g++) {
                    const int8_t *bg = blk + g * STEP_BYTES;
                    for (int i = 0; i < TILE_H; i++) {
                        const uint8_t *ai = a + (rb * TILE_H + i) * k + 4 * g;
                        for (int j = 0; j < BLOCK_COLS; j++) {
                            int32_t dot = 0;
                            for (int q = 0; q < 4; q++) dot += (int32_t)ai[q] * bg[j * 4 + q];
                            acc[i][j] += (uint32_t)dot;
                        }
                    }
                }
                cc = comp + c * npad + cb * BLOCK_COLS;
                for (int t = 0; t < TILES_PER_BLOCK; t++) {
                    const int64_t tc = cb * TILES_PER_BLOCK + t;
                    if (tc >= tile_cols) continue;
                    uint32_t fold = 0;
                    for (int i = 0; i < TILE_H; i++)
                        for (int q = 0; q < TILE_W; q++)
                            fold ^= acc[i][t * TILE_W + q] - cc[t * TILE_W + q];
                    st[t] = (st[t] ^ (uint64_t)fold) * K_CHUNK;
                    if (st[t] <= limit)
                        record(cands, max_cands, &count, (int32_t)(row_tile0 + rb),
                               (int32_t)tc, (int32_t)c, st[t]);
                }
            }
            for (int t = 0; t < TILES_PER_BLOCK; t++) {
                const int64_t tc = cb * TILES_PER_BLOCK + t;
                if (tc < tile_cols) states[rb * tile_cols + tc] = st[t];
            }
            for (int i = 0; i < TILE_H; i++)
                for (int j = 0; j < BLOCK_COLS; j++) acc[i][j] -= cc[j];
            /* D by Horner from the top digit: d = 128 d + L_j R_j (the bias removed by dc) */
            uint32_t d[TILE_H][BLOCK_COLS];
            memset(d, 0, sizeof d);
            for (int64_t l = dn->limbs - 1; l >= 0; l--) {
                const uint32_t *dc = dn->comp + l * npad + cb * BLOCK_COLS;
                const int8_t *rblk = dn->right + (l * npad + cb * BLOCK_COLS) * dn->depth;
                for (int i = 0; i < TILE_H; i++)
                    for (int j = 0; j < BLOCK_COLS; j++) d[i][j] = (d[i][j] << 7) - dc[j];
                for (int64_t g = 0; g < dn->depth / 4; g++)
                    for (int i = 0; i < TILE_H; i++) {
                        const uint8_t *li =
                            dn->left + (l * dn->rows_total + dn->row0 + rb * TILE_H + i) * dn->depth;
                        for (int j = 0; j < BLOCK_COLS; j++) {
                            int32_t dot = 0;
                            for (int q = 0; q < 4; q++)
                                dot += (int32_t)li[4 * g + q] * rblk[g * STEP_BYTES + j * 4 + q];
                            d[i][j] += (uint32_t)dot;
                        }
                    }
            }
            for (int i = 0; i < TILE_H; i++)
                for (int j = 0; j < BLOCK_COLS; j++) {
                    const int64_t col = cb * BLOCK_COLS + j;
                    if (col < n) out[(rb * TILE_H + i) * n + col] = (int32_t)(acc[i][j] - d[i][j]);
                }
        }
    }
    }
    return count;
}

#ifdef POUW_X86
#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")))

AVX512_TARGET static inline __m512i broadcast4(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

AVX512_TARGET
static int64_t fused_avx512(const uint8_t *a, const int8_t *bp, const uint32_t *comp,
                            int64_t rows, int64_t k, int64_t n, int64_t r, int64_t row_tile0,
                            uint64_t *states, uint64_t limit, int32_t *out,
                            pouw_candidate *cands, int64_t max_cands, const denoise_args *dn) {
    const int64_t nb = column_blocks(n), npad = nb * BLOCK_COLS, groups = k / 4;
    const int64_t tile_cols = n / TILE_W, row_blocks = rows / TILE_H, chunks = k / r;
    int64_t count = 0;
    const int64_t per_panel = panel_blocks(k, TILE_H, row_blocks);
    const int64_t panels = (row_blocks + per_panel - 1) / per_panel;
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int64_t rp = 0; rp < panels; rp++) {
    for (int64_t cb = 0; cb < nb; cb++) {
        const int64_t rb_end = (rp + 1) * per_panel < row_blocks ? (rp + 1) * per_panel : row_blocks;
        for (int64_t rb = rp * per_panel; rb < rb_end; rb++) {
            const int64_t first_tile = cb * TILES_PER_BLOCK;
            const int64_t live = tile_cols - first_tile < TILES_PER_BLOCK
                                     ? tile_cols - first_tile : TILES_PER_BLOCK;
            const __mmask8 tiles = (__mmask8)((1u << live) - 1u);
            uint64_t *srow = states + rb * tile_cols + first_tile;
            __m512i st = _mm512_maskz_loadu_epi64(tiles, srow);
            const __m512i kmul = _mm512_set1_epi64((long long)K_CHUNK);
            const __m512i lim = _mm512_set1_epi64((long long)limit);
            const __m512i pick = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28,
                                                   0, 0, 0, 0, 0, 0, 0, 0);
            __m512i acc[TILE_H][2];
            for (int i = 0; i < TILE_H; i++) acc[i][0] = acc[i][1] = _mm512_setzero_si512();
            const int8_t *blk = bp + cb * groups * STEP_BYTES;
            const uint8_t *arow = a + rb * TILE_H * k;
            __m512i c0 = _mm512_setzero_si512(), c1 = _mm512_setzero_si512();
            for (int64_t c = 0; c < chunks; c++) {
                for (int64_t g = c * r / 4; g < (c + 1) * r / 4; g++) {
                    const __m512i b0 = _mm512_loadu_si512(blk + g * STEP_BYTES);
                    const __m512i b1 = _mm512_loadu_si512(blk + g * STEP_BYTES + 64);
#define POUW_ROW(i)                                                  \
    {                                                                \
        const __m512i av = broadcast4(arow + (i) * k + 4 * g);       \
        acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], av, b0);          \
        acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], av, b1);          \
    }
                    POUW_ROW(0) POUW_ROW(1) POUW_ROW(2) POUW_ROW(3)
                    POUW_ROW(4) POUW_ROW(5) POUW_ROW(6) POUW_ROW(7)
#undef POUW_ROW
                }
                c0 = _mm512_loadu_si512(comp + c * npad + cb * BLOCK_COLS);
                c1 = _mm512_loadu_si512(comp + c * npad + cb * BLOCK_COLS + 16);
                __m512i x0 = _mm512_sub_epi32(acc[0][0], c0), x1 = _mm512_sub_epi32(acc[0][1], c1);
                for (int i = 1; i < TILE_H; i++) {
                    x0 = _mm512_xor_si512(x0, _mm512_sub_epi32(acc[i][0], c0));
                    x1 = _mm512_xor_si512(x1, _mm512_sub_epi32(acc[i][1], c1));
                }
                /* XOR the 4 columns of each tile (one 128-bit lane) into every lane of it */
                x0 = _mm512_xor_si512(x0, _mm512_shuffle_epi32(x0, (_MM_PERM_ENUM)0xB1));
                x1 = _mm512_xor_si512(x1, _mm512_shuffle_epi32(x1, (_MM_PERM_ENUM)0xB1));
                x0 = _mm512_xor_si512(x0, _mm512_shuffle_epi32(x0, (_MM_PERM_ENUM)0x4E));
                x1 = _mm512_xor_si512(x1, _mm512_shuffle_epi32(x1, (_MM_PERM_ENUM)0x4E));
                const __m256i folds = _mm512_castsi512_si256(_mm512_permutex2var_epi32(x0, pick, x1));
                st = _mm512_mullo_epi64(_mm512_xor_si512(st, _mm512_cvtepu32_epi64(folds)), kmul);
                const __mmask8 hit = _mm512_mask_cmple_epu64_mask(tiles, st, lim);
                if (hit) {
                    uint64_t lanes[TILES_PER_BLOCK];
                    _mm512_storeu_si512(lanes, st);
                    for (int t = 0; t < TILES_PER_BLOCK; t++)
                        if (hit & (1u << t))
                            record(cands, max_cands, &count, (int32_t)(row_tile0 + rb),
                                   (int32_t)(first_tile + t), (int32_t)c, lanes[t]);
                }
            }
            _mm512_mask_storeu_epi64(srow, tiles, st);
            const int64_t col0 = cb * BLOCK_COLS;
            const int64_t left = n - col0;
            const __mmask16 m0 = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1u);
            const __mmask16 m1 = left >= 32 ? 0xFFFF
                                 : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1u);
            for (int i = 0; i < TILE_H; i++) {
                int32_t *orow = out + (rb * TILE_H + i) * n + col0;
                _mm512_mask_storeu_epi32(orow, m0, _mm512_sub_epi32(acc[i][0], c0));
                _mm512_mask_storeu_epi32(orow + 16, m1, _mm512_sub_epi32(acc[i][1], c1));
            }
            if (dn->limbs > 0) {
                /* D by Horner from the top digit, in the same registers: starting each digit's
                 * accumulators at 128 d - comp makes them end at 128 d + Left_l Right_l. */
                for (int i = 0; i < TILE_H; i++) acc[i][0] = acc[i][1] = _mm512_setzero_si512();
                for (int64_t l = dn->limbs - 1; l >= 0; l--) {
                    const uint32_t *dc = dn->comp + l * npad + cb * BLOCK_COLS;
                    const __m512i d0 = _mm512_loadu_si512(dc), d1 = _mm512_loadu_si512(dc + 16);
                    for (int i = 0; i < TILE_H; i++) {
                        acc[i][0] = _mm512_sub_epi32(_mm512_slli_epi32(acc[i][0], 7), d0);
                        acc[i][1] = _mm512_sub_epi32(_mm512_slli_epi32(acc[i][1], 7), d1);
                    }
                    const int8_t *rblk = dn->right + (l * npad + cb * BLOCK_COLS) * dn->depth;
                    const uint8_t *lrow =
                        dn->left + (l * dn->rows_total + dn->row0 + rb * TILE_H) * dn->depth;
                    const int64_t depth = dn->depth;
                    for (int64_t g = 0; g < depth / 4; g++) {
                        const __m512i b0 = _mm512_loadu_si512(rblk + g * STEP_BYTES);
                        const __m512i b1 = _mm512_loadu_si512(rblk + g * STEP_BYTES + 64);
#define POUW_DROW(i)                                                 \
    {                                                                \
        const __m512i av = broadcast4(lrow + (i) * depth + 4 * g);   \
        acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], av, b0);          \
        acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], av, b1);          \
    }
                        POUW_DROW(0) POUW_DROW(1) POUW_DROW(2) POUW_DROW(3)
                        POUW_DROW(4) POUW_DROW(5) POUW_DROW(6) POUW_DROW(7)
#undef POUW_DROW
                    }
                }
                for (int i = 0; i < TILE_H; i++) {
                    int32_t *orow = out + (rb * TILE_H + i) * n + col0;
                    const __m512i o0 = _mm512_maskz_loadu_epi32(m0, orow);
                    const __m512i o1 = _mm512_maskz_loadu_epi32(m1, orow + 16);
                    _mm512_mask_storeu_epi32(orow, m0, _mm512_sub_epi32(o0, acc[i][0]));
                    _mm512_mask_storeu_epi32(orow + 16, m1, _mm512_sub_epi32(o1, acc[i][1]));
                }
            }
        }
    }
    }
    return count;
}

/* AMX path: the same u8 x s8 products with tdpbusd on 32-row x 32-column blocks (four 16x16
 * int32 accumulator tiles); after each chunk the tiles are stored to a 4 KiB L1 buffer and
 * folded with AVX-512 as above. Needs r and 2r (the denoising depth) multiples of 64 and
 * rows a multiple of 32; pouw_fused falls back to the VNNI path otherwise. */
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#define POUW_ARCH_REQ_XCOMP_PERM 0x1023
#define POUW_XFEATURE_XTILEDATA 18
#define AMX_TARGET __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")))

typedef struct {
    uint8_t palette_id;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} pouw_tilecfg;

static int amx_usable(void) {
    static int state = -1;
    if (state < 0) {
        unsigned eax, ebx, ecx, edx;
        state = 0;
        if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) && (edx & (1u << 24)) &&
            (edx & (1u << 25)) &&
            syscall(SYS_arch_prctl, POUW_ARCH_REQ_XCOMP_PERM, POUW_XFEATURE_XTILEDATA) == 0)
            state = 1;
    }
    return state;
}

AMX_TARGET static inline void fold_rows(const int32_t *buf, __m512i c0, __m512i c1, __m512i *st,
                                        __mmask8 tiles, __m512i lim, int64_t row_tile,
                                        int64_t first_tile, int64_t c, pouw_candidate *cands,
                                        int64_t max_cands, int64_t *count) {
    const __m512i kmul = _mm512_set1_epi64((long long)K_CHUNK);
    const __m512i pick = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0);
    __m512i x0 = _mm512_sub_epi32(_mm512_load_si512(buf), c0);
    __m512i x1 = _mm512_sub_epi32(_mm512_load_si512(buf + 16), c1);
    for (int i = 1; i < TILE_H; i++) {
        x0 = _mm512_xor_si512(x0, _mm512_sub_epi32(_mm512_load_si512(buf + i * 32), c0));
        x1 = _mm512_xor_si512(x1, _mm512_sub_epi32(_mm512_load_si512(buf + i * 32 + 16), c1));
    }
    x0 = _mm512_xor_si512(x0, _mm512_shuffle_epi32(x0, (_MM_PERM_ENUM)0xB1));
    x1 = _mm512_xor_si512(x1, _mm512_shuffle_epi32(x1, (_MM_PERM_ENUM)0xB1));
    x0 = _mm512_xor_si512(x0, _mm512_shuffle_epi32(x0, (_MM_PERM_ENUM)0x4E));
    x1 = _mm512_xor_si512(x1, _mm512_shuffle_epi32(x1, (_MM_PERM_ENUM)0x4E));
    const __m256i folds = _mm512_castsi512_si256(_mm512_permutex2var_epi32(x0, pick, x1));
    *st = _mm512_mullo_epi64(_mm512_xor_si512(*st, _mm512_cvtepu32_epi64(folds)), kmul);
    const __mmask8 hit = _mm512_mask_cmple_epu64_mask(tiles, *st, lim);
    if (hit) {
        uint64_t lanes[TILES_PER_BLOCK];
        _mm512_storeu_si512(lanes, *st);
        for (int t = 0; t < TILES_PER_BLOCK; t++)
            if (hit & (1u << t))
                record(cands, max_cands, count, (int32_t)row_tile, (int32_t)(first_tile + t),
                       (int32_t)c, lanes[t]);
    }
}

#define AMX_STORE4(buf)                              \
    _tile_stored(0, (buf), 128);                     \
    _tile_stored(1, (buf) + 16, 128);                \
    _tile_stored(2, (buf) + 16 * 32, 128);           \
    _tile_stored(3, (buf) + 16 * 32 + 16, 128);

AMX_TARGET
static int64_t fused_amx(const uint8_t *a, const int8_t *bp, const uint32_t *comp,
                         int64_t rows, int64_t k, int64_t n, int64_t r, int64_t row_tile0,
                         uint64_t *states, uint64_t limit, int32_t *out,
                         pouw_candidate *cands, int64_t max_cands, const denoise_args *dn) {
    const int64_t nb = column_blocks(n), npad = nb * BLOCK_COLS, groups = k / 4;
    const int64_t tile_cols = n / TILE_W, blocks32 = rows / 32, chunks = k / r;
    int64_t count = 0;
#pragma omp parallel
    {
        pouw_tilecfg cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.palette_id = 1;
        for (int t = 0; t < 8; t++) {
            cfg.colsb[t] = 64;
            cfg.rows[t] = 16;
        }
        _tile_loadconfig(&cfg);
        int32_t buf[32 * 32] __attribute__((aligned(64)));
        int32_t dsum[32 * 32] __attribute__((aligned(64)));
        const int64_t per_panel = panel_blocks(k, 32, blocks32);
        const int64_t panels = (blocks32 + per_panel - 1) / per_panel;
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int64_t rp = 0; rp < panels; rp++) {
        for (int64_t cb = 0; cb < nb; cb++) {
            const int64_t rb_end = (rp + 1) * per_panel < blocks32 ? (rp + 1) * per_panel : blocks32;
            for (int64_t rb = rp * per_panel; rb < rb_end; rb++) {
                const int64_t first_tile = cb * TILES_PER_BLOCK;
                const int64_t live = tile_cols - first_tile < TILES_PER_BLOCK
                                         ? tile_cols - first_tile : TILES_PER_BLOCK;
                const __mmask8 tiles = (__mmask8)((1u << live) - 1u);
                const __m512i lim = _mm512_set1_epi64((long long)limit);
                __m512i st[4];
                for (int q = 0; q < 4; q++)
                    st[q] = _mm512_maskz_loadu_epi64(
                        tiles, states + (rb * 4 + q) * tile_cols + first_tile);
                const int8_t *blk = bp + cb * groups * STEP_BYTES;
                const uint8_t *a0 = a + rb * 32 * k, *a1 = a0 + 16 * k;
                __m512i c0 = _mm512_setzero_si512(), c1 = _mm512_setzero_si512();
                _tile_zero(0);
                _tile_zero(1);
                _tile_zero(2);
                _tile_zero(3);
                for (int64_t c = 0; c < chunks; c++) {
                    for (int64_t kk = c * r; kk < (c + 1) * r; kk += 64) {
                        _tile_loadd(4, a0 + kk, k);
                        _tile_loadd(5, a1 + kk, k);
                        _tile_loadd(6, blk + (kk / 4) * STEP_BYTES, STEP_BYTES);
                        _tile_loadd(7, blk + (kk / 4) * STEP_BYTES + 64, STEP_BYTES);
                        _tile_dpbusd(0, 4, 6);
                        _tile_dpbusd(1, 4, 7);
                        _tile_dpbusd(2, 5, 6);
                        _tile_dpbusd(3, 5, 7);
                    }
                    AMX_STORE4(buf)
                    c0 = _mm512_loadu_si512(comp + c * npad + cb * BLOCK_COLS);
                    c1 = _mm512_loadu_si512(comp + c * npad + cb * BLOCK_COLS + 16);
                    for (int q = 0; q < 4; q++)
                        fold_rows(buf + q * TILE_H * 32, c0, c1, &st[q], tiles, lim,
                                  row_tile0 + rb * 4 + q, first_tile, c, cands, max_cands,
                                  &count);
                }
                for (int q = 0; q < 4; q++)
                    _mm512_mask_storeu_epi64(states + (rb * 4 + q) * tile_cols + first_tile,
                                             tiles, st[q]);
                /* buf = A'B' (biased): unbias; then D by Horner in dsum */
                for (int i = 0; i < 32; i++) {
                    _mm512_store_si512(buf + i * 32, _mm512_sub_epi32(_mm512_load_si512(buf + i * 32), c0));
                    _mm512_store_si512(buf + i * 32 + 16,
                                       _mm512_sub_epi32(_mm512_load_si512(buf + i * 32 + 16), c1));
                }
                if (dn->limbs > 0) {
                    memset(dsum, 0, sizeof dsum);
                    for (int64_t l = dn->limbs - 1; l >= 0; l--) {
                        const uint32_t *dc = dn->comp + l * npad + cb * BLOCK_COLS;
                        const __m512i d0 = _mm512_loadu_si512(dc), d1 = _mm512_loadu_si512(dc + 16);
                        const int8_t *rblk = dn->right + (l * npad + cb * BLOCK_COLS) * dn->depth;
                        const uint8_t *l0 =
                            dn->left + (l * dn->rows_total + dn->row0 + rb * 32) * dn->depth;
                        const uint8_t *l1 = l0 + 16 * dn->depth;
                        _tile_zero(0);
                        _tile_zero(1);
                        _tile_zero(2);
                        _tile_zero(3);
                        for (int64_t kk = 0; kk < dn->depth; kk += 64) {
                            _tile_loadd(4, l0 + kk, dn->depth);
                            _tile_loadd(5, l1 + kk, dn->depth);
                            _tile_loadd(6, rblk + (kk / 4) * STEP_BYTES, STEP_BYTES);
                            _tile_loadd(7, rblk + (kk / 4) * STEP_BYTES + 64, STEP_BYTES);
                            _tile_dpbusd(0, 4, 6);
                            _tile_dpbusd(1, 4, 7);
                            _tile_dpbusd(2, 5, 6);
                            _tile_dpbusd(3, 5, 7);
                        }
                        int32_t part[32 * 32] __attribute__((aligned(64)));
                        AMX_STORE4(part)
                        for (int i = 0; i < 32; i++) {
                            for (int h = 0; h < 2; h++) {
                                int32_t *dp = dsum + i * 32 + 16 * h;
                                const __m512i pv = _mm512_sub_epi32(
                                    _mm512_load_si512(part + i * 32 + 16 * h), h ? d1 : d0);
                                _mm512_store_si512(
                                    dp, _mm512_add_epi32(_mm512_slli_epi32(_mm512_load_si512(dp), 7), pv));
                            }
                        }
                    }
                    for (int i = 0; i < 32 * 32; i += 16)
                        _mm512_store_si512(buf + i, _mm512_sub_epi32(_mm512_load_si512(buf + i),
                                                                     _mm512_load_si512(dsum + i)));
                }
                const int64_t col0 = cb * BLOCK_COLS, left = n - col0;
                const __mmask16 m0 = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1u);
                const __mmask16 m1 = left >= 32 ? 0xFFFF
                                     : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1u);
                for (int i = 0; i < 32; i++) {
                    int32_t *orow = out + (rb * 32 + i) * n + col0;
                    _mm512_mask_storeu_epi32(orow, m0, _mm512_load_si512(buf + i * 32));
                    _mm512_mask_storeu_epi32(orow + 16, m1, _mm512_load_si512(buf + i * 32 + 16));
                }
            }
        }
        }
        _tile_release();
    }
    return count;
}
#endif

#ifdef POUW_X86
/* AVX2 path (CPUs without VNNI: AVX2 has no exact 8-bit dot product, vpmaddubsw saturates):
 * the products in fp32 FMA, 4 rows x 16 columns of accumulators. Entries of A', B' are in
 * [-128, 127], so a sum of up to F32_DEPTH = 1024 products stays within 2^24 and fp32 holds
 * every partial sum exactly; each chunk (r <= 1024, docs/pouw.md §1) is summed in fp32,
 * converted and added to an int32 running sum, so the folds, states and product equal the
 * other paths bit for bit. Per (row panel, 32-column block) task, B' is widened once to
 * floats per 16-column half, A' once per 8-row block; the fold is split in two row quads
 * (XOR is associative) and the states are mixed after both. */
#define AVX2_TARGET __attribute__((target("avx2,fma")))
#define F32_DEPTH 1024
#define HALF_COLS 16

/* dst[i][x] = src[i][x] - 128 as floats (src: u8 rows with the kernels' bias). */
AVX2_TARGET static void widen_rows_f32(const uint8_t *src, int64_t rows, int64_t stride,
                                       int64_t len, float *dst) {
    const __m256i bias = _mm256_set1_epi32(128);
    for (int64_t i = 0; i < rows; i++) {
        const uint8_t *s = src + i * stride;
        float *d = dst + i * len;
        for (int64_t x = 0; x < len; x += 8) {
            const __m128i v = _mm_loadl_epi64((const __m128i *)(s + x));
            _mm256_storeu_ps(d + x, _mm256_cvtepi32_ps(
                                        _mm256_sub_epi32(_mm256_cvtepu8_epi32(v), bias)));
        }
    }
}

/* dst[x][j] = column 16*half + j of a packed block (pouw_pack_b's [depth/4][32][4]) at depth x,
 * as floats: per 4-deep group, the half's 64 bytes (16 columns of 4) are transposed to 4 rows
 * of 16 by a byte shuffle within each 128-bit lane and a dword permute across lanes. */
AVX2_TARGET static void widen_half_f32(const int8_t *blk, int64_t depth, int half, float *dst) {
    /* within a lane: 4 columns x 4 deep -> 4 deep x 4 columns */
    const __m256i by_depth = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11,
                                              15, 0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7,
                                              11, 15);
    /* dwords (lane0: q0 q1 q2 q3 of cols 0-3, lane1: of cols 4-7) -> q0 q0' q1 q1' ... */
    const __m256i pair = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t g = 0; g < depth / 4; g++) {
        const int8_t *src = blk + g * STEP_BYTES + HALF_COLS * half * 4;
        const __m256i lo = _mm256_permutevar8x32_epi32(
            _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)src), by_depth), pair);
        const __m256i hi = _mm256_permutevar8x32_epi32(
            _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(src + 32)), by_depth), pair);
        /* lo: 8 bytes per depth q (columns 0-7), hi: the same for columns 8-15 */
        int8_t t[64];
        _mm256_storeu_si256((__m256i *)t, lo);
        _mm256_storeu_si256((__m256i *)(t + 32), hi);
        for (int q = 0; q < 4; q++) {
            float *d = dst + (4 * g + q) * HALF_COLS;
            const __m128i l8 = _mm_loadl_epi64((const __m128i *)(t + 8 * q));
            const __m128i h8 = _mm_loadl_epi64((const __m128i *)(t + 32 + 8 * q));
            _mm256_storeu_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(l8)));
            _mm256_storeu_ps(d + 8, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(h8)));
        }
    }
}

/* sum[i][j] += sum over x in [x0, x1) of af[i][x] * bf[x][j], for `rows` rows (a constant
 * after inlining: 6 rows keep 12 accumulators in flight, enough to cover the FMA latency)
 * and 16 columns (x1 - x0 <= F32_DEPTH: exact in fp32). */
AVX2_TARGET static inline __attribute__((always_inline)) void
rows_f32(const float *af, int64_t lda, const float *bf, int64_t x0, int64_t x1,
         int32_t sum[][HALF_COLS], const int rows) {
    __m256 acc[6][2];
    for (int i = 0; i < rows; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int64_t x = x0; x < x1; x++) {
        const __m256 b0 = _mm256_loadu_ps(bf + x * HALF_COLS);
        const __m256 b1 = _mm256_loadu_ps(bf + x * HALF_COLS + 8);
        for (int i = 0; i < rows; i++) {
            const __m256 av = _mm256_broadcast_ss(af + i * lda + x);
            acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
        }
    }
    for (int i = 0; i < rows; i++)
        for (int h = 0; h < 2; h++) {
            __m256i *s = (__m256i *)(sum[i] + 8 * h);
            _mm256_storeu_si256(s, _mm256_add_epi32(_mm256_loadu_si256(s),
                                                    _mm256_cvtps_epi32(acc[i][h])));
        }
}

AVX2_TARGET static void rows6_f32(const float *af, int64_t lda, const float *bf, int64_t x0,
                                  int64_t x1, int32_t sum[][HALF_COLS]) {
    rows_f32(af, lda, bf, x0, x1, sum, 6);
}

AVX2_TARGET static void rows4_f32(const float *af, int64_t lda, const float *bf, int64_t x0,
                                  int64_t x1, int32_t sum[][HALF_COLS]) {
    rows_f32(af, lda, bf, x0, x1, sum, 4);
}

AVX2_TARGET static void rows2_f32(const float *af, int64_t lda, const float *bf, int64_t x0,
                                  int64_t x1, int32_t sum[][HALF_COLS]) {
    rows_f32(af, lda, bf, x0, x1, sum, 2);
}

/* The XOR of each 4-column tile of one row's 16 sums (tiles 0..3), into fold[t * stride]. */
AVX2_TARGET static void row_folds(const int32_t row[HALF_COLS], uint32_t *fold, int64_t stride) {
    for (int h = 0; h < 2; h++) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(row + 8 * h));
        x = _mm256_xor_si256(x, _mm256_shuffle_epi32(x, 0xB1));
        x = _mm256_xor_si256(x, _mm256_shuffle_epi32(x, 0x4E));
        fold[(2 * h) * stride] ^= (uint32_t)_mm256_extract_epi32(x, 0);
        fold[(2 * h + 1) * stride] ^= (uint32_t)_mm256_extract_epi32(x, 4);
    }
}

/* rf: each digit's right operand for this half, widened (limbs x depth x 16 floats).
 * out[i][j] -= D for rows rb*8.. and the 16 columns (D = sum_l 128^l Left_l Right_l by Horner,
 * each digit product in exact fp32 pieces of F32_DEPTH). */
AVX2_TARGET static void denoise_half_f32(const denoise_args *dn, int64_t rb, float *lf,
                                         const float *rf,
                                         int32_t d[TILE_H][HALF_COLS]) {
    const int64_t depth = dn->depth;
    memset(d, 0, sizeof(int32_t) * TILE_H * HALF_COLS);
    for (int64_t l = dn->limbs - 1; l >= 0; l--) {
        for (int i = 0; i < TILE_H; i++)
            for (int j = 0; j < HALF_COLS; j++) d[i][j] = (int32_t)((uint32_t)d[i][j] << 7);
        widen_rows_f32(dn->left + (l * dn->rows_total + dn->row0 + rb * TILE_H) * depth,
                       TILE_H, depth, depth, lf);
        for (int quad = 0; quad < 2; quad++)
            for (int64_t x0 = 0; x0 < depth; x0 += F32_DEPTH)
                rows4_f32(lf + 4 * quad * depth, depth, rf + l * depth * HALF_COLS, x0,
                          x0 + F32_DEPTH < depth ? x0 + F32_DEPTH : depth, d + 4 * quad);
    }
}

AVX2_TARGET
static int64_t fused_avx2(const uint8_t *a, const int8_t *bp, int64_t rows, int64_t k,
                          int64_t n, int64_t r, int64_t row_tile0, uint64_t *states,
                          uint64_t limit, int32_t *out, pouw_candidate *cands,
                          int64_t max_cands, const denoise_args *dn) {
    const int64_t nb = column_blocks(n), npad = nb * BLOCK_COLS, groups = k / 4;
    const int64_t tile_cols = n / TILE_W, row_blocks = rows / TILE_H, chunks = k / r;
    int64_t count = 0;
    /* each task widens its B' block to floats: the int8 paths' panels amortise that (a
     * task streams its A' rows once per 16-column half; B''s half stays in L2) */
    const int64_t per_panel = panel_blocks(k, TILE_H, row_blocks);
    const int64_t panels = (row_blocks + per_panel - 1) / per_panel;
    const int64_t depth = dn->limbs > 0 ? dn->depth : 4;
    float *af = (float *)malloc((size_t)(rows * k) * sizeof(float));
    if (af == NULL) return -2;
    int failed = 0; /* a thread could not allocate its buffers: its tasks are not done */
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int64_t rb = 0; rb < row_blocks; rb++)
            widen_rows_f32(a + rb * TILE_H * k, TILE_H, k, k, af + rb * TILE_H * k);
        float *bf = (float *)malloc((size_t)(k * HALF_COLS) * sizeof(float));
        float *lf = (float *)malloc((size_t)(TILE_H * depth) * sizeof(float));
        float *rf = (float *)malloc((size_t)((dn->limbs > 0 ? dn->limbs : 1) * depth *
                                             HALF_COLS) * sizeof(float));
        uint32_t *folds = (uint32_t *)malloc((size_t)(per_panel * 4 * chunks) * sizeof(uint32_t));
        int32_t *sums = (int32_t *)malloc((size_t)(per_panel * TILE_H * HALF_COLS) * sizeof(int32_t));
        const int have_buffers = bf && lf && rf && folds && sums;
        if (!have_buffers) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int64_t rp = 0; rp < panels; rp++) {
        for (int64_t cb = 0; cb < nb; cb++) {
            if (!have_buffers) continue;
            const int64_t rb_end = (rp + 1) * per_panel < row_blocks ? (rp + 1) * per_panel
                                                                       : row_blocks;
            for (int half = 0; half < 2; half++) {
                const int64_t col0 = cb * BLOCK_COLS + half * HALF_COLS;
                if (col0 >= n) break;
                const int64_t live = n - col0 < HALF_COLS ? n - col0 : HALF_COLS;
                widen_half_f32(bp + cb * groups * STEP_BYTES, k, half, bf);
                for (int64_t l = 0; l < dn->limbs; l++)
                    widen_half_f32(dn->right + (l * npad + cb * BLOCK_COLS) * depth, depth, half,
                                   rf + l * depth * HALF_COLS);
                /* the panel's rows in groups of 6 (then 4 or 2: 8 rows a block), each row's
                 * tile XORs into its block's folds; states are mixed per block after */
                const int64_t rb0 = rp * per_panel, prows = (rb_end - rb0) * TILE_H;
                memset(sums, 0, (size_t)(prows * HALF_COLS) * sizeof(int32_t));
                memset(folds, 0, (size_t)((rb_end - rb0) * 4 * chunks) * sizeof(uint32_t));
                for (int64_t i0 = 0; i0 < prows; i0 += 6) {
                    const int64_t group = prows - i0 < 6 ? prows - i0 : 6;
                    const float *arow = af + (rb0 * TILE_H + i0) * k;
                    int32_t (*srow)[HALF_COLS] = (int32_t (*)[HALF_COLS])(sums + i0 * HALF_COLS);
                    for (int64_t c = 0; c < chunks; c++) {
                        if (group == 6) rows6_f32(arow, k, bf, c * r, (c + 1) * r, srow);
                        else if (group == 4) rows4_f32(arow, k, bf, c * r, (c + 1) * r, srow);
                        else rows2_f32(arow, k, bf, c * r, (c + 1) * r, srow);
                        for (int64_t i = 0; i < group; i++)
                            row_folds(srow[i], folds + ((i0 + i) / TILE_H) * 4 * chunks + c,
                                      chunks);
                    }
                }
                for (int64_t rb = rb0; rb < rb_end; rb++) {
                    int32_t (*sum)[HALF_COLS] =
                        (int32_t (*)[HALF_COLS])(sums + (rb - rb0) * TILE_H * HALF_COLS);
                    const uint32_t *bfold = folds + (rb - rb0) * 4 * chunks;
                    for (int t = 0; t < 4 && 4 * t < live; t++) {
                        const int64_t tc = col0 / TILE_W + t;
                        uint64_t st = states[rb * tile_cols + tc];
                        for (int64_t c = 0; c < chunks; c++) {
                            st = (st ^ (uint64_t)bfold[t * chunks + c]) * K_CHUNK;
                            if (st <= limit)
                                record(cands, max_cands, &count, (int32_t)(row_tile0 + rb),
                                       (int32_t)tc, (int32_t)c, st);
                        }
                        states[rb * tile_cols + tc] = st;
                    }
                    int32_t d[TILE_H][HALF_COLS];
                    if (dn->limbs > 0)
                        denoise_half_f32(dn, rb, lf, rf, d);
                    else
                        memset(d, 0, sizeof d);
                    for (int i = 0; i < TILE_H; i++) {
                        int32_t *orow = out + (rb * TILE_H + i) * n + col0;
                        for (int j = 0; j < live; j++)
                            orow[j] = (int32_t)((uint32_t)sum[i][j] - (uint32_t)d[i][j]);
                    }
                }
            }
        }
        }
        free(sums);
        free(folds);
        free(rf);
        free(lf);
        free(bf);
    }
    free(af);
    return failed ? -2 : count;
}

static int avx2_usable(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

/* 3 when AMX runs here (and the OS grants the tile state), 2 for AVX-512 VNNI, 1 for AVX2 with
 * FMA, 0 for the portable path. */
int pouw_best_isa(void) {
#ifdef POUW_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512vnni"))
        return amx_usable() ? 3 : 2;
    if (avx2_usable()) return 1;
#endif
    return 0;
}

int pouw_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* Mine rows [row_tile0*8, row_tile0*8 + rows) of one job: out = A'B' (int32), states advanced
 * through every chunk, and each (tile, chunk) whose state is <= limit listed in cands (the
 * return value is their number, which may exceed max_cands: then the list is incomplete).
 * isa: -1 best available, 0 portable, 1 AVX2 (fp32 FMA), 2 AVX-512 VNNI, 3 AMX (each falls
 * back to the next one down where absent or where the shape does not suit it). Returns -1 for
 * a shape no path takes, -2 if memory ran out. */
int64_t pouw_fused(const uint8_t *a, const int8_t *bp, const uint32_t *comp, int64_t rows,
                   int64_t k, int64_t n, int64_t r, int64_t row_tile0, uint64_t *states,
                   uint64_t limit, int32_t *out, pouw_candidate *cands, int64_t max_cands,
                   const uint8_t *dleft, const int8_t *dright, const uint32_t *dcomp,
                   int64_t limbs, int64_t depth, int64_t rows_total, int64_t row0, int isa) {
    if (rows % TILE_H || n % TILE_W || r % 16 || k % r || depth % 4 || limbs < 0) return -1;
    const denoise_args dn_args = {dleft, dright, dcomp, limbs, depth, rows_total, row0};
    const denoise_args *dn = &dn_args;
    const int best = pouw_best_isa();
    if (isa < 0 || isa > best) isa = best;
#ifdef POUW_X86
    if (isa == 3 && rows % 32 == 0 && r % 64 == 0 && (dn->limbs == 0 || dn->depth % 64 == 0))
        return fused_amx(a, bp, comp, rows, k, n, r, row_tile0, states, limit, out, cands,
                         max_cands, dn);
    if (isa >= 2)
        return fused_avx512(a, bp, comp, rows, k, n, r, row_tile0, states, limit, out, cands,
                            max_cands, dn);
    if (isa == 1 && r <= F32_DEPTH && avx2_usable())
        return fused_avx2(a, bp, rows, k, n, r, row_tile0, states, limit, out, cands,
                          max_cands, dn);
#endif
    return fused_generic(a, bp, comp, rows, k, n, r, row_tile0, states, limit, out, cands,
                         max_cands, dn);
}

static struct PyModuleDef fused_module = {PyModuleDef_HEAD_INIT, "_fused",
                                          "PoUW fused kernel (loaded through ctypes).", -1,
                                          NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__fused(void) { return PyModule_Create(&fused_module); }
