/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sim-agent.c -- POST vm/{id}/executeCmd (and vm/{uuid}/executeCmd/): a
 * qemu-guest-agent command run in the VM (cas-api.md §3.8, S1). The body is
 * {"command": "<qemu-ga JSON command>"} (or <vmCommand><command>..), the
 * answer an rsResult (§2.3) whose `data` is the agent's JSON reply as text.
 *
 * DESIGN: the simulator's VMs run no guest OS, so there is no agent: by
 * default the call is the 409 business error CAS gives when the agent does
 * not answer (Error-Code 11). The knob `ctl fault guest-agent [VM] on` puts a
 * stand-in in its place that answers like qemu-ga for guest-ping,
 * guest-sync(-delimited), guest-fsfreeze-freeze(-list) (the number of file
 * systems frozen: 1), guest-fsfreeze-thaw (the number thawed) and
 * guest-fsfreeze-status ("frozen" / "thawed", kept per VM); any other
 * command is qemu-ga's CommandNotFound. A second freeze gets the error
 * qemu-ga gives while frozen ("has been disabled"). The
 * frozen state is what snapshot tasks record (sim-tasks.c) so that a
 * client's quiesce can be checked through GET vm/snapshot/{id}; a power
 * operation ends it.
 */
#include <stdio.h>
#include <string.h>

#include "daemon/log.h"
#include "daemon/util.h"
#include "tests/sim/sim.h"

#define FROZEN_FS 1 /* the file systems the stand-in guest freezes */

static json_t *agent_error(const char *cls, const char *fmt, const char *cmd)
{
        char desc[256];

        snprintf(desc, sizeof(desc), fmt, cmd);
        return json_pack("{s:{s:s, s:s}}", "error", "class", cls, "desc", desc);
}

/* The stand-in's reply to execute (args as qemu-ga takes them), {"return": ..} or {"error": ..}. */
static json_t *agent_run(sim_vm *vm, const char *execute, json_t *args)
{
        bool freeze = streq(execute, "guest-fsfreeze-freeze") || streq(execute, "guest-fsfreeze-freeze-list");

        if (vm->fs_frozen && freeze)
                return agent_error("CommandNotFound", "Command %s has been disabled: the agent is in frozen state",
                                   execute);
        if (streq(execute, "guest-ping"))
                return json_pack("{s:{}}", "return");
        if (streq(execute, "guest-sync") || streq(execute, "guest-sync-delimited")) {
                json_t *id = json_object_get(args, "id");

                return id ? json_pack("{s:O}", "return", id)
                          : agent_error("GenericError", "Parameter '%s' is missing", "id");
        }
        if (streq(execute, "guest-fsfreeze-status"))
                return json_pack("{s:s}", "return", vm->fs_frozen ? "frozen" : "thawed");
        if (freeze) {
                vm->fs_frozen = true;
                log_info("VM %s: guest file systems frozen", vm->name);
                return json_pack("{s:i}", "return", FROZEN_FS);
        }
        if (streq(execute, "guest-fsfreeze-thaw")) {
                int n = vm->fs_frozen ? FROZEN_FS : 0;

                vm->fs_frozen = false;
                log_info("VM %s: guest file systems thawed", vm->name);
                return json_pack("{s:i}", "return", n);
        }
        return agent_error("CommandNotFound", "The command %s has not been found", execute);
}

void sim_r_vm_execute_cmd(sim_route_ctx *c)
{
        _cleanup_(json_decrefp) json_t *b = NULL, *cmd = NULL, *reply = NULL;
        _cleanup_free_ char *data = NULL;
        sim_vm *vm = sim_route_vm(c, c->seg[0]);
        const char *command, *execute;
        json_t *err, *o;

        if (!vm)
                return;
        b = sim_parse_body(c->body, "vmCommand");
        command = sim_body_str(b, "command");
        if (!command || !*command)
                return sim_reply_error(c->rep, 11, "命令不能为空。");
        if (!vm->running)
                return sim_reply_error(c->rep, 11, "虚拟机未运行，不能执行命令。");
        if (!sim_fault_vm(SIM_FAULT_GUEST_AGENT, vm))
                return sim_reply_error(c->rep, 11, "虚拟机的qemu-guest-agent未运行。");
        /* {"execute": "guest-ping", "arguments": {..}}, or a bare command name. */
        cmd = json_loads(command, 0, NULL);
        execute = json_string_value(json_object_get(cmd, "execute"));
        if (!cmd && !strpbrk(command, "{}\" "))
                execute = command;
        reply = execute ? agent_run(vm, execute, json_object_get(cmd, "arguments"))
                        : json_pack("{s:{s:s, s:s}}", "error", "class", "GenericError", "desc", "Invalid JSON syntax");
        data = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
        if (!data)
                return sim_reply_error(c->rep, 11, "内部错误。");
        err = json_object_get(reply, "error");
        o = json_object();
        json_object_set_new(o, "state", json_integer(err ? 1 : 0));
        json_object_set_new(o, "errorCode", json_integer(err ? 1 : 0));
        json_object_set_new(o, "message", json_string(err ? json_string_value(json_object_get(err, "desc")) : ""));
        json_object_set_new(o, "data", json_string(data));
        sim_reply_tree(c->rep, "rsResult", o);
}
