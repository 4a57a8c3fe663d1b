/*
 * C test of libaether_ffi.a through include/ruv_temporal.h (C99). Built and run by
 * tests/c_abi.rs, which writes the inputs:
 *
 *   test_ruv_temporal BLOB INPUT_DIM N_CLASSES WINDOW FRAMES EXPECTED
 *
 * BLOB      a .rvne file (v1 or v2)
 * FRAMES    raw little-endian f32, INPUT_DIM per frame
 * EXPECTED  records of (uint32 frames pushed so far, f32 logits[N_CLASSES]): the Rust
 *           forward (aether-head) on the last min(pushed, WINDOW) frames
 *
 * Checks: the self test, every init misuse (NULL, wrong dims, window 0 / too large,
 * truncated, CRC-corrupted, wrong version, bad magic) with *out_ctx left NULL, push and
 * classify misuse, classify before any frame, logits equal to Rust's within 1e-5 at each
 * checkpoint (ring wrapped several times), a context over a misaligned copy of the blob
 * giving identical logits, NaN/Inf frames refused with the ring unchanged, destroy(NULL).
 * Exit status 0 when every check passes; each failure prints one line.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ruv_temporal.h"

static int failures = 0;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);           \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, "\n");                                         \
            failures++;                                                    \
        }                                                                  \
    } while (0)

#define CHECK_ERR(got, want, what)                                         \
    CHECK((got) == (want), "%s: got 0x%x, want 0x%x", what, (unsigned)(got), (unsigned)(want))

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long n;
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = (uint8_t *)malloc(n > 0 ? (size_t)n : 1u);
    if (!buf || (n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n)) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(2);
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static uint32_t parse_u32(const char *s) { return (uint32_t)strtoul(s, NULL, 10); }

/* init on a modified copy of the blob must fail with `want` and leave *out_ctx NULL. */
static void expect_init_fails(const uint8_t *blob, size_t len, uint32_t f, uint32_t w,
                              uint32_t c, esp_err_t want, const char *what) {
    ruv_temporal_ctx_t *ctx = (ruv_temporal_ctx_t *)&failures; /* not NULL on purpose */
    esp_err_t err = ruv_temporal_init(blob, len, f, w, c, &ctx);
    CHECK_ERR(err, want, what);
    CHECK(ctx == NULL, "%s: *out_ctx not NULL after failure", what);
    if (err == ESP_OK) ruv_temporal_destroy(ctx);
}

int main(int argc, char **argv) {
    size_t blob_len, frames_len, expected_len, i;
    uint8_t *blob, *copy, *misaligned_store;
    float *frames, *logits, *logits2, *before, *after, *bad;
    uint8_t *expected;
    uint32_t F, C, W, n_frames, pushed = 0;
    size_t rec_len, n_rec, rec;
    ruv_temporal_ctx_t *ctx = NULL, *ctx2 = NULL;
    esp_err_t err;

    if (argc != 7) {
        fprintf(stderr, "usage: %s BLOB INPUT_DIM N_CLASSES WINDOW FRAMES EXPECTED\n", argv[0]);
        return 2;
    }
    blob = read_file(argv[1], &blob_len);
    F = parse_u32(argv[2]);
    C = parse_u32(argv[3]);
    W = parse_u32(argv[4]);
    frames = (float *)read_file(argv[5], &frames_len);
    expected = read_file(argv[6], &expected_len);
    n_frames = (uint32_t)(frames_len / sizeof(float) / F);
    rec_len = sizeof(uint32_t) + C * sizeof(float);
    n_rec = expected_len / rec_len;
    logits = (float *)malloc(C * sizeof(float));
    logits2 = (float *)malloc(C * sizeof(float));
    before = (float *)malloc(C * sizeof(float));
    after = (float *)malloc(C * sizeof(float));
    bad = (float *)malloc(F * sizeof(float));
    CHECK(n_rec > 0 && expected_len == n_rec * rec_len, "expected file size %lu", (unsigned long)expected_len);

    CHECK_ERR(ruv_temporal_kernel_self_test(), ESP_OK, "self test");

    /* ---- init misuse: every failure leaves *out_ctx NULL ---- */
    CHECK_ERR(ruv_temporal_init(blob, blob_len, F, W, C, NULL), ESP_ERR_INVALID_ARG, "NULL out_ctx");
    expect_init_fails(NULL, blob_len, F, W, C, ESP_ERR_INVALID_ARG, "NULL weights");
    expect_init_fails(blob, 0, F, W, C, ESP_ERR_INVALID_SIZE, "empty blob");
    expect_init_fails(blob, 5, F, W, C, ESP_ERR_INVALID_SIZE, "5-byte blob");
    expect_init_fails(blob, blob_len - 1, F, W, C, ESP_ERR_INVALID_SIZE, "truncated by one byte");
    expect_init_fails(blob, blob_len / 2, F, W, C, ESP_ERR_INVALID_SIZE, "truncated by half");
    expect_init_fails(blob, blob_len, F + 1, W, C, ESP_ERR_INVALID_ARG, "wrong input_dim");
    expect_init_fails(blob, blob_len, 0, W, C, ESP_ERR_INVALID_ARG, "input_dim 0");
    expect_init_fails(blob, blob_len, F, W, C + 1, ESP_ERR_INVALID_ARG, "wrong n_classes");
    expect_init_fails(blob, blob_len, F, 0, C, ESP_ERR_INVALID_ARG, "window 0");
    expect_init_fails(blob, blob_len, F, RUV_TEMPORAL_MAX_WINDOW + 1u, C, ESP_ERR_INVALID_ARG,
                      "window too large");
    copy = (uint8_t *)malloc(blob_len);
    memcpy(copy, blob, blob_len);
    copy[blob_len - 9] ^= 0x40; /* inside the last tensor */
    expect_init_fails(copy, blob_len, F, W, C, ESP_ERR_INVALID_CRC, "corrupted weight byte");
    memcpy(copy, blob, blob_len);
    copy[blob_len - 1] ^= 0x01; /* the CRC itself */
    expect_init_fails(copy, blob_len, F, W, C, ESP_ERR_INVALID_CRC, "corrupted CRC");
    memcpy(copy, blob, blob_len);
    copy[4] = 3; /* version 3 */
    expect_init_fails(copy, blob_len, F, W, C, ESP_ERR_INVALID_VERSION, "version 3");
    memcpy(copy, blob, blob_len);
    copy[0] = 'X';
    expect_init_fails(copy, blob_len, F, W, C, ESP_ERR_INVALID_VERSION, "bad magic");
    free(copy);

    /* ---- a valid context, and a second one over a misaligned copy (weights copied) ---- */
    err = ruv_temporal_init(blob, blob_len, F, W, C, &ctx);
    CHECK_ERR(err, ESP_OK, "init");
    if (err != ESP_OK || ctx == NULL) return 1;
    misaligned_store = (uint8_t *)malloc(blob_len + 3);
    memcpy(misaligned_store + 1, blob, blob_len);
    err = ruv_temporal_init(misaligned_store + 1, blob_len, F, W, C, &ctx2);
    CHECK_ERR(err, ESP_OK, "init over a misaligned buffer");
    if (err != ESP_OK || ctx2 == NULL) return 1;

    /* ---- misuse before any frame ---- */
    for (i = 0; i < C; i++) logits[i] = 12345.0f;
    CHECK_ERR(ruv_temporal_classify(ctx, logits, C), ESP_ERR_INVALID_STATE, "classify before push");
    for (i = 0; i < C; i++) CHECK(logits[i] == 12345.0f, "logits written on error");
    CHECK_ERR(ruv_temporal_classify(NULL, logits, C), ESP_ERR_INVALID_ARG, "classify NULL ctx");
    CHECK_ERR(ruv_temporal_classify(ctx, NULL, C), ESP_ERR_INVALID_ARG, "classify NULL logits");
    CHECK_ERR(ruv_temporal_push(NULL, frames), ESP_ERR_INVALID_ARG, "push NULL ctx");
    CHECK_ERR(ruv_temporal_push(ctx, NULL), ESP_ERR_INVALID_ARG, "push NULL frame");
    for (i = 0; i < F; i++) bad[i] = 0.5f;
    bad[F - 1] = (float)NAN;
    CHECK_ERR(ruv_temporal_push(ctx, bad), ESP_ERR_INVALID_ARG, "NaN as first frame");
    CHECK_ERR(ruv_temporal_classify(ctx, logits, C), ESP_ERR_INVALID_STATE,
              "refused frame must not count");

    /* ---- push every frame, compare with Rust at each checkpoint ---- */
    rec = 0;
    for (pushed = 0; pushed <= n_frames && rec < n_rec; pushed++) {
        uint32_t at;
        memcpy(&at, expected + rec * rec_len, sizeof at);
        if (at == pushed) {
            const uint8_t *want = expected + rec * rec_len + sizeof(uint32_t);
            CHECK_ERR(ruv_temporal_classify(ctx, logits, C), ESP_OK, "classify");
            CHECK_ERR(ruv_temporal_classify(ctx2, logits2, C), ESP_OK, "classify (copied weights)");
            for (i = 0; i < C; i++) {
                float w;
                memcpy(&w, want + i * sizeof(float), sizeof w);
                CHECK(fabsf(logits[i] - w) <= 1e-5f, "after %u frames: logit %lu is %.9g, Rust %.9g",
                      (unsigned)pushed, (unsigned long)i, (double)logits[i], (double)w);
            }
            CHECK(memcmp(logits, logits2, C * sizeof(float)) == 0,
                  "after %u frames: borrowed and copied weights differ", (unsigned)pushed);
            /* classify twice in a row gives the same answer (the ring rotation is stable) */
            CHECK_ERR(ruv_temporal_classify(ctx, logits2, C), ESP_OK, "classify again");
            CHECK(memcmp(logits, logits2, C * sizeof(float)) == 0, "second classify differs");
            rec++;
        }
        if (pushed < n_frames) {
            CHECK_ERR(ruv_temporal_push(ctx, frames + (size_t)pushed * F), ESP_OK, "push");
            CHECK_ERR(ruv_temporal_push(ctx2, frames + (size_t)pushed * F), ESP_OK, "push (copy)");
        }
    }
    CHECK(rec == n_rec, "only %lu of %lu checkpoints reached", (unsigned long)rec, (unsigned long)n_rec);

    /* ---- NaN / Inf frames are refused and the ring is unchanged ---- */
    CHECK_ERR(ruv_temporal_classify(ctx, before, C), ESP_OK, "classify before bad frames");
    for (i = 0; i < F; i++) bad[i] = 0.25f;
    bad[0] = (float)NAN;
    CHECK_ERR(ruv_temporal_push(ctx, bad), ESP_ERR_INVALID_ARG, "NaN frame");
    bad[0] = (float)INFINITY;
    CHECK_ERR(ruv_temporal_push(ctx, bad), ESP_ERR_INVALID_ARG, "+Inf frame");
    bad[0] = 0.25f;
    bad[F - 1] = -(float)INFINITY;
    CHECK_ERR(ruv_temporal_push(ctx, bad), ESP_ERR_INVALID_ARG, "-Inf frame");
    CHECK_ERR(ruv_temporal_classify(ctx, after, C), ESP_OK, "classify after bad frames");
    CHECK(memcmp(before, after, C * sizeof(float)) == 0, "ring changed by refused frames");

    /* ---- classify misuse with frames present ---- */
    for (i = 0; i < C; i++) logits[i] = 12345.0f;
    CHECK_ERR(ruv_temporal_classify(ctx, logits, C + 1), ESP_ERR_INVALID_ARG, "n_classes + 1");
    CHECK_ERR(ruv_temporal_classify(ctx, logits, C - 1), ESP_ERR_INVALID_ARG, "n_classes - 1");
    CHECK_ERR(ruv_temporal_classify(ctx, logits, 0), ESP_ERR_INVALID_ARG, "n_classes 0");
    for (i = 0; i < C; i++) CHECK(logits[i] == 12345.0f, "logits written on error");

    ruv_temporal_destroy(NULL);
    ruv_temporal_destroy(ctx);
    ruv_temporal_destroy(ctx2);
    free(misaligned_store);
    free(blob);
    free(frames);
    free(expected);
    free(logits);
    free(logits2);
    free(before);
    free(after);
    free(bad);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("ok: %lu checkpoints, %u frames, window %u\n", (unsigned long)n_rec, (unsigned)n_frames,
           (unsigned)W);
    return 0;
}
