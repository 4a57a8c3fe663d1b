/*
 * ruv_temporal.h: the AETHER temporal head for firmware (aether-ffi, libaether_ffi.a).
 *
 * Hand-kept; crates/aether-ffi/tests/header.rs checks every prototype here against the
 * Rust signatures and every status code against the Rust constants.
 *
 * Usage: one context per task. push() at the feature rate (copies one frame, O(input_dim),
 * never allocates), classify() about once a second (the forward over the last
 * min(pushed, window_len) frames, oldest first; never allocates).
 *
 *   ruv_temporal_ctx_t *ctx = NULL;
 *   esp_err_t err = ruv_temporal_init(blob, blob_len, 16, 256, 4, &ctx);
 *   ...  ruv_temporal_push(ctx, frame);              // float frame[16]
 *   ...  ruv_temporal_classify(ctx, logits, 4);      // float logits[4]
 *   ruv_temporal_destroy(ctx);                       // then blob may be freed
 *
 * Compiles as plain C99 (and C++). Inside ESP-IDF the status codes come from esp_err.h;
 * elsewhere this header defines esp_err_t and the codes it uses with the ESP-IDF values.
 */
#ifndef RUV_TEMPORAL_H
#define RUV_TEMPORAL_H

#include <stddef.h>
#include <stdint.h>

#if defined(__has_include)
#if __has_include(<esp_err.h>)
#include <esp_err.h>
#endif
#endif

#ifndef ESP_OK
typedef int32_t esp_err_t;
#define ESP_OK 0
#define ESP_FAIL -1
#define ESP_ERR_NO_MEM 0x101
#define ESP_ERR_INVALID_ARG 0x102
#define ESP_ERR_INVALID_STATE 0x103
#define ESP_ERR_INVALID_SIZE 0x104
#define ESP_ERR_NOT_SUPPORTED 0x106
#define ESP_ERR_INVALID_CRC 0x109
#define ESP_ERR_INVALID_VERSION 0x10A
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Largest window_len ruv_temporal_init accepts (frames). */
#define RUV_TEMPORAL_MAX_WINDOW 65536u

/* Opaque classifier state: the head, a ring of window_len frames, all forward scratch. */
typedef struct ruv_temporal_ctx ruv_temporal_ctx_t;

/*
 * Creates a context from a .rvne blob (version 1 or 2).
 *
 * The blob is validated (magic, version, lengths, CRC-32, every field) and must describe
 * a model with exactly input_dim features per frame and n_classes classes. Everything is
 * allocated here, once: the ring of window_len frames and all forward scratch.
 *
 * The context BORROWS the weights (zero-copy, e.g. straight from memory-mapped flash):
 * keep the buffer valid and unmodified until ruv_temporal_destroy(). f32 tensors are used
 * in place when `weights` is 4-byte aligned (v1 weights start at byte 24 and v2 tensors
 * at 16-byte offsets, so a 4-aligned buffer makes every f32 tensor 4-aligned); otherwise,
 * and for f16 blobs, the tensors are copied (converted) once here.
 *
 * Returns ESP_OK and sets *out_ctx, or an error with *out_ctx = NULL:
 *   ESP_ERR_INVALID_ARG     NULL weights/out_ctx, window_len 0 or > RUV_TEMPORAL_MAX_WINDOW,
 *                           input_dim or n_classes not the blob's, an invalid model
 *   ESP_ERR_INVALID_SIZE    truncated blob or inconsistent lengths
 *   ESP_ERR_INVALID_CRC     CRC-32 mismatch (corrupted blob)
 *   ESP_ERR_INVALID_VERSION not a .rvne, or a version other than 1 and 2
 *   ESP_ERR_NOT_SUPPORTED   the blob needs a feature this library does not know
 *   ESP_ERR_NO_MEM          the allocator refused a buffer
 */
esp_err_t ruv_temporal_init(const uint8_t *weights, size_t weights_len,
                            uint32_t input_dim, uint32_t window_len,
                            uint32_t n_classes, ruv_temporal_ctx_t **out_ctx);

/*
 * Copies one frame of input_dim floats into the ring (the oldest frame is dropped when
 * the window is full). O(input_dim), no allocation.
 * ESP_ERR_INVALID_ARG: NULL ctx/frame, or a NaN/Inf value (the ring is unchanged).
 */
esp_err_t ruv_temporal_push(ruv_temporal_ctx_t *ctx, const float *frame);

/*
 * Runs the forward over the last min(pushed, window_len) frames, oldest first, and writes
 * n_classes logits. No allocation; logits is untouched on error.
 *   ESP_ERR_INVALID_STATE no frame pushed yet
 *   ESP_ERR_INVALID_ARG   NULL ctx/logits, n_classes not the model's
 *   ESP_FAIL              the result overflowed f32 (finite but enormous inputs)
 */
esp_err_t ruv_temporal_classify(ruv_temporal_ctx_t *ctx, float *logits, uint32_t n_classes);

/* Frees the context and everything it allocated. NULL is a no-op. */
void ruv_temporal_destroy(ruv_temporal_ctx_t *ctx);

/* Runs a tiny known-answer forward: ESP_OK when it reproduces the committed logits. */
esp_err_t ruv_temporal_kernel_self_test(void);

/*
 * Allocator hooks, no_std builds only (the MCU static library; the host library uses the
 * system allocator and does not reference them). The FIRMWARE defines these two; every
 * allocation happens inside ruv_temporal_init() and ruv_temporal_kernel_self_test(), every
 * free inside ruv_temporal_destroy() and at the end of a failed init or the self test.
 * ruv_temporal_alloc returns size bytes aligned to align (a power of two, at most 16 in
 * practice) or NULL; ruv_temporal_free receives the same size and align. ESP-IDF:
 *   void *ruv_temporal_alloc(size_t size, size_t align)
 *   { return heap_caps_aligned_alloc(align < 4 ? 4 : align, size, MALLOC_CAP_8BIT); }
 *   void ruv_temporal_free(void *ptr, size_t size, size_t align)
 *   { (void)size; (void)align; heap_caps_free(ptr); }
 */
void *ruv_temporal_alloc(size_t size, size_t align);
void ruv_temporal_free(void *ptr, size_t size, size_t align);

#ifdef __cplusplus
}
#endif

#endif /* RUV_TEMPORAL_H */
