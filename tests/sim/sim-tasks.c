/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sim-tasks.c -- asynchronous operations: the taskMsg a mutating call
 * answers (cas-api.md §2.1) and its progress through message/{msgId} (§2.2).
 *
 * DESIGN: a task's progress is a function of its age: 0 for the first
 * 400 ms, 50 until 1 s, then 100 with completed=true. The effect on the
 * model is applied when the task is settled, which sim_tasks_settle() does
 * at the start of every request, so nothing observes the model and the
 * task out of step. msgId is a millisecond timestamp (more than 32 bits,
 * §2.1), bumped when two tasks start in the same millisecond. eventType is
 * 0 while running and the operation's code once done (30 start, 31 power
 * off, 32 stop, §2.2; the snapshot codes 40 create, 41 delete, 42 simplify
 * are guesses: no capture shows them; 20 add VM and 21 delete VM are
 * captured, 22 device change and 50 volume create are guesses). Finished
 * tasks stay queryable for ten minutes. A vm/add task shows targetId 0 until
 * it completes, then the new VM's id (§2.2: clients read it from the final
 * task); a volume task shows its host's id and the volume's name.
 * Settling does the real work (sim-qemu.c, sim-restore.c, sim-volumes.c):
 * an error fails the task with the error as failMsg, still HTTP 200 (§5).
 * Fault knobs (sim-ctl.c) act here: task-slow stretches the timing of the
 * tasks created while it is on tenfold, shutdown-hang keeps a stop task at
 * progress 50 for SHUTDOWN_HANG_MS and then fails it (the VM keeps running),
 * snapshot-fail fails snapshot create tasks with a failMsg; with guest-agent
 * on, a snapshot records whether the guest's file systems were frozen when it
 * was taken (settled).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "daemon/log.h"
#include "daemon/util.h"
#include "tests/sim/sim.h"

#define TASK_STEP_MS 400
#define TASK_DONE_MS 1000
#define TASK_KEEP_MS (10 * 60 * 1000)
#define TASK_SLOW_FACTOR 10   /* fault task-slow */
#define SHUTDOWN_HANG_MS 6000 /* fault shutdown-hang: the stop task fails after this */

typedef struct {
        int64_t msg_id, start_ms, end_ms;
        int64_t step_ms, done_ms; /* progress 50 from step_ms, settled from done_ms (task age) */
        bool hang;                /* shutdown-hang: fails at done_ms instead of running */
        sim_task_kind kind;
        int64_t vm_id;     /* the VM the task acts on; 0 for vm/add and volume tasks */
        int64_t target_id; /* targetId: the VM, the new VM once a vm/add completes, a volume's host */
        char *target_name;
        char *key;                   /* what a vm/add or volume task makes (sim_task_pending) */
        json_t *spec;                /* the work of a restore task (sim_task_start_spec) */
        char *snap_name, *snap_desc; /* snapshot tasks */
        int snap_mode;
        bool settled;
        int result; /* 0 ok, 1 failed, 2 partly (§2.2) */
        char *fail_msg;
} sim_task;

static sim_task *tasks;
static size_t n_tasks;
static int64_t last_msg_id;

static const struct {
        const char *verb, *noun, *what; /* for name/detail, as CAS words them (S4 captures) */
        int event_type;
} kinds[] = {
        [SIM_TASK_START] = { "启动", "虚拟机", "", 30 },
        [SIM_TASK_STOP] = { "关闭", "虚拟机", "", 32 },
        [SIM_TASK_POWEROFF] = { "断电", "虚拟机", "", 31 },
        [SIM_TASK_SNAPSHOT] = { "创建", "虚拟机", "的快照", 40 },
        [SIM_TASK_SNAP_DELETE] = { "删除", "虚拟机", "的快照", 41 },
        [SIM_TASK_SIMPLIFY] = { "简化", "虚拟机", "的镜像链", 42 },
        [SIM_TASK_VM_ADD] = { "增加", "虚拟机", "", 20 },
        [SIM_TASK_VM_DELETE] = { "删除", "虚拟机", "", 21 },
        [SIM_TASK_ADD_DEVICE] = { "增加", "虚拟机", "的磁盘", 22 },
        [SIM_TASK_DEL_DEVICE] = { "卸载", "虚拟机", "的磁盘", 22 },
        [SIM_TASK_VOL_CREATE] = { "增加", "存储卷", "", 50 },
};

int64_t sim_now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void format_date(int64_t ms, char *buf, size_t size)
{
        time_t t = ms / 1000;
        struct tm tm;
        char base[32], zone[8];

        localtime_r(&t, &tm);
        strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
        strftime(zone, sizeof(zone), "%z", &tm);
        /* ISO 8601 with milliseconds and a colon in the offset, as captured (§2.2). */
        snprintf(buf, size, "%s.%03d%.3s:%s", base, (int)(ms % 1000), zone, zone + 3);
}

static sim_task *task_find(int64_t msg_id)
{
        for (size_t i = 0; i < n_tasks; i++)
                if (tasks[i].msg_id == msg_id)
                        return &tasks[i];
        return NULL;
}

static void task_free(sim_task *t)
{
        free(t->target_name);
        free(t->key);
        json_decref(t->spec);
        free(t->snap_name);
        free(t->snap_desc);
        free(t->fail_msg);
}

/* The work of a task on an existing VM. */
static int settle_vm(sim_model *m, sim_task *t, sim_vm *vm, char **err)
{
        bool want_running = t->kind == SIM_TASK_START;
        int r = 0;

        switch (t->kind) {
        case SIM_TASK_START:
        case SIM_TASK_STOP:
        case SIM_TASK_POWEROFF:
                if (vm->running == want_running) {
                        *err = strdup(want_running ? "虚拟机已处于运行状态。" : "虚拟机已处于关闭状态。");
                        return -EINVAL;
                }
                r = want_running ? sim_qemu_start(vm, err) : sim_qemu_stop(vm, t->kind == SIM_TASK_STOP, err);
                if (r >= 0)
                        vm->running = want_running;
                /* A fresh boot (or none): no frozen file systems. */
                vm->fs_frozen = false;
                break;
        case SIM_TASK_SNAPSHOT:
                if (sim_fault_vm(SIM_FAULT_SNAPSHOT_FAIL, vm)) {
                        *err = strdup("创建快照失败：存储I/O错误。");
                        return -EIO;
                }
                r = sim_qemu_snapshot_create(vm, t->snap_name, t->snap_mode, t->snap_desc, err);
                /* What a client's quiesce is checked against: frozen at the moment it was taken. */
                if (r >= 0 && vm->n_snaps)
                        vm->snaps[vm->n_snaps - 1].quiesced =
                                vm->running && vm->fs_frozen && sim_fault_vm(SIM_FAULT_GUEST_AGENT, vm);
                break;
        case SIM_TASK_SNAP_DELETE:
                r = sim_qemu_snapshot_delete(vm, t->snap_name, err);
                /* The end of a backup: a full one after a power cycle re-arms CBT. */
                if (r >= 0)
                        vm->cbt_valid = true;
                break;
        case SIM_TASK_SIMPLIFY:
                r = sim_qemu_simplify(vm, err);
                if (r >= 0)
                        vm->cbt_valid = true;
                break;
        case SIM_TASK_VM_DELETE:
                r = sim_vm_delete(m, vm, streq_ptr(json_string_value(json_object_get(t->spec, "type")), "1"), err);
                break;
        case SIM_TASK_ADD_DEVICE:
                r = sim_vm_add_disk(m, vm, t->spec, err);
                break;
        case SIM_TASK_DEL_DEVICE:
                r = sim_vm_del_disk(vm, t->spec, err);
                break;
        case SIM_TASK_VM_ADD:
        case SIM_TASK_VOL_CREATE:
                break;
        }
        return r;
}

/* Applies a finished task to the model. Starting a running VM (or stopping a
 * stopped one) fails the task with a failMsg, still HTTP 200 (§5), and so
 * does any error of QEMU or qemu-img. */
static void task_settle(sim_model *m, sim_task *t)
{
        char *err = NULL;
        int64_t new_id = 0;
        sim_vm *vm;
        int r;

        t->settled = true;
        t->end_ms = MAX(t->start_ms + t->done_ms, sim_now_ms());
        if (t->hang) {
                t->result = 1;
                t->fail_msg = strdup("关闭虚拟机超时。");
                return;
        }
        if (t->kind == SIM_TASK_VM_ADD) {
                r = sim_vm_add(m, t->spec, &new_id, &err);
                if (r >= 0)
                        t->target_id = t->vm_id = new_id;
        } else if (t->kind == SIM_TASK_VOL_CREATE) {
                r = sim_volume_create(t->spec, &err);
        } else if ((vm = sim_model_vm_by_id(m, t->vm_id))) {
                r = settle_vm(m, t, vm, &err);
        } else {
                r = -ENOENT;
                err = strdup("虚拟机不存在。");
        }
        t->result = r < 0 ? 1 : 0;
        if (r < 0) {
                log_warning("task %" PRId64 " on %s failed: %s", t->msg_id, t->target_name, err ? err : strerror(-r));
                t->fail_msg = err ? err : strdup(strerror(-r));
        } else {
                free(err);
        }
        t->end_ms = MAX(t->end_ms, sim_now_ms());
}

void sim_tasks_settle(sim_model *m)
{
        int64_t now = sim_now_ms();
        size_t keep = 0;

        sim_qemu_refresh(m);
        for (size_t i = 0; i < n_tasks; i++) {
                sim_task *t = &tasks[i];

                if (!t->settled && now - t->start_ms >= t->done_ms)
                        task_settle(m, t);
                if (t->settled && now - t->end_ms > TASK_KEEP_MS) {
                        task_free(t);
                        continue;
                }
                tasks[keep++] = *t;
        }
        n_tasks = keep;
}

static json_t *task_tree(const sim_task *t, int64_t now)
{
        json_t *o = json_object();
        int64_t age = now - t->start_ms;
        int progress = t->settled ? 100 : age >= t->step_ms ? 50 : 0;
        char *name = NULL, *detail = NULL, date[48];

        if (asprintf(&name, "%s%s“%s”%s。", kinds[t->kind].verb, kinds[t->kind].noun, t->target_name,
                     kinds[t->kind].what) < 0)
                name = NULL;
        json_object_set_new(o, "msgId", json_integer(t->msg_id));
        json_object_set_new(o, "name", json_string(name ? name : ""));
        json_object_set_new(o, "targetId", json_integer(t->target_id));
        json_object_set_new(o, "targetName", json_string(t->target_name));
        json_object_set_new(o, "completed", json_boolean(t->settled));
        json_object_set_new(o, "progress", json_integer(progress));
        json_object_set_new(o, "eventType", json_integer(t->settled ? kinds[t->kind].event_type : 0));
        format_date(t->start_ms, date, sizeof(date));
        json_object_set_new(o, "start", json_string(date));
        if (t->settled) {
                if (asprintf(&detail, "%s%s“%s”%s%s。%s%s", kinds[t->kind].verb, kinds[t->kind].noun, t->target_name,
                             kinds[t->kind].what, t->result ? "失败" : "成功", t->result ? "原因：" : "",
                             t->result ? t->fail_msg : "") < 0)
                        detail = NULL;
                format_date(t->end_ms, date, sizeof(date));
                json_object_set_new(o, "complete", json_string(date));
                json_object_set_new(o, "detail", json_string(detail ? detail : ""));
                json_object_set_new(o, "result", json_integer(t->result));
                json_object_set_new(o, "failMsg", json_string(t->fail_msg ? t->fail_msg : ""));
        }
        free(name);
        free(detail);
        return o;
}

/* A new task on vm, or with vm NULL on target_id / target_name. */
static sim_task *task_new(sim_task_kind kind, sim_vm *vm, int64_t target_id, const char *target_name)
{
        sim_task *arr, *t;
        int64_t now = sim_now_ms();

        arr = realloc(tasks, (n_tasks + 1) * sizeof(*tasks));
        if (!arr)
                return NULL;
        tasks = arr;
        t = &tasks[n_tasks++];
        *t = (sim_task){ .msg_id = MAX(now, last_msg_id + 1),
                         .start_ms = now,
                         .kind = kind,
                         .vm_id = vm ? vm->id : 0,
                         .target_id = vm ? vm->id : target_id };
        t->step_ms = TASK_STEP_MS;
        t->done_ms = TASK_DONE_MS;
        if (sim_fault_vm(SIM_FAULT_TASK_SLOW, vm)) {
                t->step_ms *= TASK_SLOW_FACTOR;
                t->done_ms *= TASK_SLOW_FACTOR;
        }
        if (kind == SIM_TASK_STOP && vm && vm->running && sim_fault_vm(SIM_FAULT_SHUTDOWN_HANG, vm)) {
                t->hang = true;
                t->done_ms = SHUTDOWN_HANG_MS;
        }
        last_msg_id = t->msg_id;
        t->target_name = strdup(vm ? vm->name : target_name);
        if (!t->target_name) {
                n_tasks--;
                return NULL;
        }
        return t;
}

json_t *sim_task_start(sim_model *m, sim_task_kind kind, sim_vm *vm)
{
        sim_task *t = task_new(kind, vm, 0, NULL);

        return t ? task_tree(t, t->start_ms) : NULL;
}

json_t *sim_task_start_spec(sim_model *m, sim_task_kind kind, sim_vm *vm, int64_t target_id, const char *target_name,
                            const char *key, json_t *spec)
{
        sim_task *t = task_new(kind, vm, target_id, target_name);

        if (!t)
                return NULL;
        t->spec = json_incref(spec);
        if (key && !(t->key = strdup(key))) {
                task_free(t);
                n_tasks--;
                return NULL;
        }
        return task_tree(t, t->start_ms);
}

bool sim_task_pending(sim_task_kind kind, const char *key)
{
        for (size_t i = 0; i < n_tasks; i++)
                if (!tasks[i].settled && tasks[i].kind == kind && streq_ptr(tasks[i].key, key))
                        return true;
        return false;
}

json_t *sim_task_start_snapshot(sim_model *m, sim_task_kind kind, sim_vm *vm, const char *name, int mode,
                                const char *desc)
{
        sim_task *t = task_new(kind, vm, 0, NULL);

        if (!t)
                return NULL;
        t->snap_mode = mode;
        t->snap_name = strdup(name ? name : "");
        t->snap_desc = strdup(desc ? desc : "");
        if (!t->snap_name || !t->snap_desc) {
                task_free(t);
                n_tasks--;
                return NULL;
        }
        return task_tree(t, t->start_ms);
}

bool sim_task_snapshot_pending(const sim_vm *vm, const char *name)
{
        for (size_t i = 0; i < n_tasks; i++)
                if (!tasks[i].settled && tasks[i].kind == SIM_TASK_SNAPSHOT && tasks[i].vm_id == vm->id &&
                    streq(tasks[i].snap_name, name))
                        return true;
        return false;
}

json_t *sim_task_view(int64_t msg_id)
{
        sim_task *t = task_find(msg_id);

        return t ? task_tree(t, sim_now_ms()) : NULL;
}
