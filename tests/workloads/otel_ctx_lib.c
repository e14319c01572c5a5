/* A minimal OTEP 4947 thread-context writer, as a shared library: it
 * defines and exports the TLS variable `otel_thread_ctx_v1` (built with the
 * TLSDESC dialect the OTEP recommends) and points it at a per-thread
 * record. spanlet must find the variable in this library, not in the
 * executable, and locate it through the loader's own resolution. */
#include <stdint.h>
#include <string.h>

struct otel_thread_ctx_record {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t valid;
    uint8_t trace_flags;
    uint16_t attrs_data_size;
} __attribute__((packed, aligned(2)));

__attribute__((visibility("default"))) __thread struct otel_thread_ctx_record *otel_thread_ctx_v1;
static __thread struct otel_thread_ctx_record record;

void otel_ctx_attach(const uint8_t trace_id[16], const uint8_t span_id[8]) {
    otel_thread_ctx_v1 = NULL;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    memcpy(record.trace_id, trace_id, 16);
    memcpy(record.span_id, span_id, 8);
    record.trace_flags = 1;
    record.attrs_data_size = 0;
    record.valid = 1;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    otel_thread_ctx_v1 = &record;
}

void otel_ctx_detach(void) { otel_thread_ctx_v1 = NULL; }
