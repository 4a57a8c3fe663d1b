/*
 * aether mcu-bench: a QEMU TCG plugin that attributes executed guest instructions to
 * the function (ELF symbol) each translation block starts in, and prints the totals per
 * function at exit, largest first:   mcu-bench profile <insns> <symbol>
 * For finding where a region's instructions go (tools/mcu-bench/README.md); same API
 * version and build as icount.c:   cc -shared -fPIC -O2 -o profile.so profile.c
 * Arguments `from=N,to=M` count only inside regions N..=M (the markers of icount.c).
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 = 0 };
typedef void (*tb_trans_cb_t)(qemu_plugin_id_t, struct qemu_plugin_tb *);
typedef void (*udata_cb_t)(qemu_plugin_id_t, void *);
typedef void (*vcpu_udata_cb_t)(unsigned int, void *);
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS = 0 };
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *, vcpu_udata_cb_t,
                                          enum qemu_plugin_cb_flags, void *);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *, vcpu_udata_cb_t,
                                            enum qemu_plugin_cb_flags, void *);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, tb_trans_cb_t);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *, enum qemu_plugin_op,
                                              void *, uint64_t);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *, size_t);
const char *qemu_plugin_insn_symbol(const struct qemu_plugin_insn *);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, udata_cb_t, void *);
void qemu_plugin_outs(const char *);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

#define MAX_SYMS 8192
struct sym {
    const char *name;
    uint64_t insns;
};
static struct sym syms[MAX_SYMS];
static int nsyms;

static struct sym *lookup(const char *name)
{
    for (int i = 0; i < nsyms; i++)
        if (syms[i].name == name || !strcmp(syms[i].name, name))
            return &syms[i];
    if (nsyms == MAX_SYMS)
        return &syms[MAX_SYMS - 1];
    syms[nsyms].name = strdup(name);
    return &syms[nsyms++];
}

static const char *last = "?";
static long from = -1, to = -1, region = -1;
static int inside;

struct blk {
    struct sym *e;
    uint64_t n;
};

static void on_exec(unsigned int vcpu, void *u)
{
    (void)vcpu;
    struct blk *b = u;
    if (inside && region >= from && region <= to)
        b->e->insns += b->n;
}

static void on_start(unsigned int vcpu, void *u)
{
    (void)vcpu;
    (void)u;
    if (!inside) {
        inside = 1;
        region++;
    }
}

static void on_stop(unsigned int vcpu, void *u)
{
    (void)vcpu;
    (void)u;
    inside = 0;
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    const char *s = qemu_plugin_insn_symbol(qemu_plugin_tb_get_insn(tb, 0));
    if (s)
        last = s;
    struct sym *e = lookup(s ? s : last);
    for (size_t i = 0; i < n; i++) {
        const char *m = qemu_plugin_insn_symbol(qemu_plugin_tb_get_insn(tb, i));
        if (m && !strcmp(m, "mcu_bench_start"))
            qemu_plugin_register_vcpu_insn_exec_cb(qemu_plugin_tb_get_insn(tb, i), on_start,
                                                   QEMU_PLUGIN_CB_NO_REGS, NULL);
        if (m && !strcmp(m, "mcu_bench_stop"))
            qemu_plugin_register_vcpu_insn_exec_cb(qemu_plugin_tb_get_insn(tb, i), on_stop,
                                                   QEMU_PLUGIN_CB_NO_REGS, NULL);
    }
    if (from < 0) {
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &e->insns, n);
    } else {
        struct blk *b = malloc(sizeof *b);
        b->e = e;
        b->n = n;
        qemu_plugin_register_vcpu_tb_exec_cb(tb, on_exec, QEMU_PLUGIN_CB_NO_REGS, b);
    }
}

static int by_count(const void *a, const void *b)
{
    uint64_t x = ((const struct sym *)a)->insns, y = ((const struct sym *)b)->insns;
    return x < y ? 1 : x > y ? -1 : 0;
}

static void at_exit(qemu_plugin_id_t id, void *u)
{
    (void)id;
    (void)u;
    char buf[512];
    qsort(syms, nsyms, sizeof syms[0], by_count);
    for (int i = 0; i < nsyms && i < 60; i++) {
        snprintf(buf, sizeof buf, "mcu-bench profile %" PRIu64 " %s\n", syms[i].insns, syms[i].name);
        qemu_plugin_outs(buf);
    }
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
                                                               const void *info, int argc,
                                                               char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], "from=", 5))
            from = strtol(argv[i] + 5, NULL, 10);
        else if (!strncmp(argv[i], "to=", 3))
            to = strtol(argv[i] + 3, NULL, 10);
    }
    if (from >= 0 && to < 0)
        to = from;
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
