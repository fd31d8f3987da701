/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vbak.c -- the vbak command line. `vbak pool ...` works on a storage pool
 * directly, `vbak cas ...` on a CAS manager; the commands that go through
 * vbakd (cli-daemon.c) join here as the daemon grows.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/cli-cas.h"
#include "daemon/cli-config.h"
#include "daemon/cli-cvd.h"
#include "daemon/cli-daemon-pool.h"
#include "daemon/cli-daemon.h"
#include "daemon/cli-job.h"
#include "daemon/cli-run.h"
#include "daemon/cli-pool.h"
#include "daemon/cli-restore.h"
#include "daemon/error.h"
#include "daemon/log.h"
#include "daemon/util.h"

#include "daemon/version.h"

static void help(FILE *f)
{
        fputs("Usage: vbak COMMAND ...\n"
              "vbak backs up and restores VM disks into deduplicated, compressed storage pools.\n\n"
              "Commands:\n"
              "  pool       work on a storage pool directly (init, backup, restore, list,\n"
              "             verify, gc, prune, stats); see vbak pool --help\n"
              "  cvd        talk to a disk service (ping, open, bitmap); see vbak cvd --help\n"
              "  cas        talk to an H3C CAS manager without the daemon (inventory, vm, power,\n"
              "             backup, restore, delete); see vbak cas --help\n"
              "  status     ask vbakd whether it runs; see vbak status --help\n"
              "  platform   the platforms vbakd backs up (add, list, show, update, remove)\n"
              "  inventory  a platform's VMs, through vbakd\n"
              "  job        backup jobs (create, list, show, modify, clone, remove, start, stop)\n"
              "  run        a job's runs (list, show, retry); --follow shows their progress\n"
              "  restore-point  the restore points vbakd knows (list, show)\n"
              "  restore    restores through vbakd: whole VMs or single disks, shown and confirmed\n"
              "             first (vm, disk, list, show, start, stop); --follow shows their progress\n"
              "  config     vbakd's settings in its configuration file (show, set)\n"
              "  help       show this text\n"
              "  version    show the version\n\n"
              "Exit codes are listed in docs/error-codes.md. VBAK_LOG_LEVEL sets the log level.\n",
              f);
}

int main(int argc, char **argv)
{
        vb_log_parse_environment();
        if (argc < 2) {
                help(stderr);
                return VB_E_USAGE;
        }
        if (streq(argv[1], "--help") || streq(argv[1], "-h") || streq(argv[1], "help")) {
                help(stdout);
                return 0;
        }
        if (streq(argv[1], "--version") || streq(argv[1], "version")) {
                printf("vbak %s\n", VB_VERSION);
                return 0;
        }
        if (streq(argv[1], "pool"))
                return vb_cli_pool(argc - 1, argv + 1);
        if (streq(argv[1], "cvd"))
                return vb_cli_cvd(argc - 1, argv + 1);
        if (streq(argv[1], "cas"))
                return vb_cli_cas(argc - 1, argv + 1);
        if (streq(argv[1], "status"))
                return vb_cli_status(argc - 1, argv + 1);
        if (streq(argv[1], "platform"))
                return vb_cli_platform(argc - 1, argv + 1);
        if (streq(argv[1], "inventory"))
                return vb_cli_inventory(argc - 1, argv + 1);
        if (streq(argv[1], "job"))
                return vb_cli_job(argc - 1, argv + 1);
        if (streq(argv[1], "run"))
                return vb_cli_run(argc - 1, argv + 1);
        if (streq(argv[1], "restore-point"))
                return vb_cli_restore_point(argc - 1, argv + 1);
        if (streq(argv[1], "restore"))
                return vb_cli_restore(argc - 1, argv + 1);
        if (streq(argv[1], "config"))
                return vb_cli_config(argc - 1, argv + 1);
        fprintf(stderr, "vbak: unknown command '%s' (see vbak --help) [E%d %s]\n", argv[1], VB_E_USAGE,
                vb_error_name(VB_E_USAGE));
        return VB_E_USAGE;
}
