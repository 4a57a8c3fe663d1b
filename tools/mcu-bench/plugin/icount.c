/*
 * aether mcu-bench: a QEMU TCG plugin that counts executed guest instructions between
 * calls of the guest functions `mcu_bench_start` and `mcu_bench_stop` (found by ELF
 * symbol name). Each start/stop pair is one region; the plugin prints, in order,
 *     mcu-bench region <n> insns <count>
 * and at exit the total. With `-icount shift=0` the guest's own counters (RISC-V
 * minstret) agree; without it they follow host time, but this count does not.
 *
 * Counting is per translation block (an inline add of the block's instruction count
 * when the block starts), so a region's count includes the markers' own short blocks:
 * both markers are a few instructions, the same in every region.
 *
 * Self-contained: it declares the few functions of the QEMU plugin API version 1 it
 * uses (QEMU 4.2 .. 8.x, e.g. Debian 12's QEMU 7.2), so no QEMU headers or glib are
 * needed:   cc -shared -fPIC -O2 -o icount.so icount.c
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 = 0 };
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS = 0 };
typedef void (*tb_trans_cb_t)(qemu_plugin_id_t, struct qemu_plugin_tb *);
typedef void (*udata_cb_t)(qemu_plugin_id_t, void *);
typedef void (*vcpu_udata_cb_t)(unsigned int, void *);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, tb_trans_cb_t);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *, enum qemu_plugin_op,
                                              void *, uint64_t);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *, size_t);
const char *qemu_plugin_insn_symbol(const struct qemu_plugin_insn *);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *, vcpu_udata_cb_t,
                                            enum qemu_plugin_cb_flags, void *);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, udata_cb_t, void *);
void qemu_plugin_outs(const char *);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t total;   /* executed instructions, single vCPU */
static uint64_t start;   /* `total` when the open region started */
static int open_region;  /* a start marker ran and its stop has not */
static unsigned regions;

/* A symbol name matches every instruction of its function in QEMU 7.2, so only the
 * first hit of a marker opens or closes a region. */
static void on_start(unsigned int vcpu, void *u)
{
    (void)vcpu;
    (void)u;
    if (!open_region) {
        start = total;
        open_region = 1;
    }
}

static void on_stop(unsigned int vcpu, void *u)
{
    (void)vcpu;
    (void)u;
    char buf[96];
    if (!open_region)
        return;
    open_region = 0;
    snprintf(buf, sizeof buf, "mcu-bench region %u insns %" PRIu64 "\n", regions++,
             total - start);
    qemu_plugin_outs(buf);
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &total, n);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        const char *sym = qemu_plugin_insn_symbol(insn);
        if (!sym)
            continue;
        if (!strcmp(sym, "mcu_bench_start"))
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_start, QEMU_PLUGIN_CB_NO_REGS, NULL);
        else if (!strcmp(sym, "mcu_bench_stop"))
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_stop, QEMU_PLUGIN_CB_NO_REGS, NULL);
    }
}

static void at_exit(qemu_plugin_id_t id, void *u)
{
    (void)id;
    (void)u;
    char buf[80];
    snprintf(buf, sizeof buf, "mcu-bench total insns %" PRIu64 "\n", total);
    qemu_plugin_outs(buf);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
                                                               const void *info, int argc,
                                                               char **argv)
{
    (void)info;
    (void)argv;
    if (argc != 0) {
        fprintf(stderr, "mcu-bench icount plugin takes no arguments\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
