/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cli-config.c -- `vbak config show` and `vbak config set KEY VALUE` on the
 * daemon's configuration file.
 *
 * DESIGN
 * - The file, not the daemon: both verbs work on vbakd.conf directly, so
 *   they work with vbakd stopped (the usual moment to change a [restart]
 *   key) and show what the daemon will read at its next start. The file is
 *   --config, else $VBAK_CONFIG, else the one vbakd reads by default.
 * - The table in daemon/config.c is the only list of keys: show prints every
 *   row, set checks the key against it and the value with the parser vbakd
 *   uses, so nothing set here can stop the daemon at start.
 * - set edits one line (vb_config_file_set()): comments, order and the
 *   commented defaults of the shipped file stay as they were.
 */
#include "daemon/cli-config.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/cli-common.h"
#include "daemon/config.h"
#include "daemon/error.h"
#include "daemon/util.h"

enum {
        OPT_CONFIG = 0x100,
        OPT_JSON,
};

static const struct option options[] = {
        { "help", no_argument, NULL, 'h' },
        { "config", required_argument, NULL, OPT_CONFIG },
        { "json", no_argument, NULL, OPT_JSON },
        {},
};

static void help(FILE *f)
{
        fputs("Usage: vbak config show [--config FILE] [--json]\n"
              "       vbak config set KEY VALUE [--config FILE] [--json]\n"
              "The settings vbakd reads from its configuration file at start.\n\n"
              "  show   every key with the value in force, where it comes from (the file's\n"
              "         line or the built-in default) and whether a change needs a restart\n"
              "  set    check VALUE as vbakd would and write it into the file, keeping every\n"
              "         comment and other line\n\n"
              "  --config FILE  the file (default $VBAK_CONFIG, else " VB_CONFIG_FILE_DEFAULT ")\n"
              "  --json         print JSON\n",
              f);
}

static void help_show(FILE *f)
{
        fputs("Usage: vbak config show [--config FILE] [--json]\n"
              "Shows every setting of vbakd: its value in force, where that comes from (the\n"
              "file's line, or the built-in default for keys the file does not set), whether\n"
              "a change needs a restart of vbakd, and what it allows. A missing file means\n"
              "every key has its default.\n\n"
              "  --config FILE  the file (default $VBAK_CONFIG, else " VB_CONFIG_FILE_DEFAULT ")\n"
              "  --json         print JSON\n",
              f);
}

static void help_set(FILE *f)
{
        fputs("Usage: vbak config set KEY VALUE [--config FILE] [--json]\n"
              "Sets KEY to VALUE in vbakd's configuration file, after checking both as vbakd\n"
              "does (vbak config show lists the keys and what they allow). The key's line is\n"
              "replaced, or its commented default line is uncommented, or a line is added;\n"
              "the rest of the file stays as it is. The file is replaced atomically, and\n"
              "created (mode 0644) when missing. It then says whether vbakd needs a restart.\n\n"
              "  --config FILE  the file (default $VBAK_CONFIG, else " VB_CONFIG_FILE_DEFAULT ")\n"
              "  --json         print JSON\n",
              f);
}

/* The options of a verb; operands are left in argv[optind..]. Returns 0,
 * -1 after --help (exit 0), or an exit code. */
static int parse_options(int argc, char **argv, void (*verb_help)(FILE *f), const char **config)
{
        int c;

        *config = NULL;
        optind = 1;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        verb_help(stdout);
                        return -1;
                case OPT_CONFIG:
                        *config = optarg;
                        break;
                case OPT_JSON:
                        vb_cli_json = true;
                        break;
                default:
                        verb_help(stderr);
                        return VB_E_USAGE;
                }
        if (!*config)
                *config = getenv("VBAK_CONFIG");
        if (!*config || !**config)
                *config = VB_CONFIG_FILE_DEFAULT;
        return 0;
}

static int show(int argc, char **argv)
{
        _cleanup_free_ char *err = NULL;
        _cleanup_free_ unsigned *lines = NULL;
        struct vb_config c, d;
        const char *path;
        bool exists = true;
        json_t *keys = NULL;
        int r;

        r = parse_options(argc, argv, help_show, &path);
        if (r != 0)
                return r < 0 ? 0 : r;
        if (optind != argc) {
                help_show(stderr);
                return vb_cli_fail(VB_E_USAGE, "config show takes no operands");
        }
        lines = calloc(vb_config_n_keys, sizeof(*lines));
        if (!lines || vb_config_init_defaults(&c) < 0)
                return vb_cli_fail(VB_E_FAILED, "out of memory");
        if (vb_config_init_defaults(&d) < 0) {
                vb_config_free(&c);
                return vb_cli_fail(VB_E_FAILED, "out of memory");
        }
        r = vb_config_load_lines(&c, path, lines, &err);
        if (r == -ENOENT)
                exists = false;
        else if (r < 0) {
                vb_config_free(&c);
                vb_config_free(&d);
                /* A file vbakd would refuse is a usage error: the message
                 * names the file, the line and what is allowed. */
                return vb_cli_fail(r == -EINVAL || r == -EFBIG ? VB_E_USAGE : vb_error_from_errno(r), "%s",
                                   err ?: strerror(-r));
        }

        if (vb_cli_json)
                keys = json_array();
        else if (exists)
                printf("# %s\n", path);
        else
                printf("# %s does not exist: every key has its built-in default\n", path);
        if (!vb_cli_json)
                printf("%-20s %-22s %-12s %-8s %s\n", "KEY", "VALUE", "FROM", "RESTART", "ALLOWED");
        VB_CONFIG_FOREACH_KEY(k) {
                unsigned line = lines[k - vb_config_keys];
                char value[512], def[512], allowed[256], from[32];

                if (vb_config_format_value(&c, k, value, sizeof(value)) < 0 ||
                    vb_config_format_value(&d, k, def, sizeof(def)) < 0 ||
                    vb_config_format_allowed(k, allowed, sizeof(allowed)) < 0)
                        snprintf(value, sizeof(value), "?");
                if (vb_cli_json) {
                        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:b, s:s, s:s}", "key", k->name, "value", value,
                                              "default", def, "source", line ? "file" : "default", "needs_restart",
                                              k->needs_restart, "allowed", allowed, "description", k->description);
                        if (o && line)
                                json_object_set_new(o, "line", json_integer(line));
                        json_array_append_new(keys, o);
                        continue;
                }
                if (line)
                        snprintf(from, sizeof(from), "file:%u", line);
                else
                        snprintf(from, sizeof(from), "default");
                printf("%-20s %-22s %-12s %-8s %s\n", k->name, value, from, k->needs_restart ? "yes" : "no", allowed);
        }
        vb_config_free(&c);
        vb_config_free(&d);
        if (vb_cli_json)
                return vb_cli_print_json(json_pack("{s:s, s:b, s:o}", "file", path, "exists", exists, "keys", keys));
        return 0;
}

static int set(int argc, char **argv)
{
        _cleanup_free_ char *err = NULL;
        struct vb_config_edit edit = {};
        const struct vb_config_key *k;
        const char *path, *key, *value;
        char applies[160];
        int r;

        r = parse_options(argc, argv, help_set, &path);
        if (r != 0)
                return r < 0 ? 0 : r;
        if (argc - optind != 2) {
                help_set(stderr);
                return vb_cli_fail(VB_E_USAGE, "config set takes KEY VALUE");
        }
        key = argv[optind];
        value = argv[optind + 1];
        r = vb_config_file_set(path, key, value, &edit, &err);
        if (r == -ENOENT && !vb_config_find(key))
                return vb_cli_fail(VB_E_USAGE, "%s (vbak config show lists the keys)", err ?: "unknown key");
        if (r == -EINVAL || r == -EFBIG)
                return vb_cli_fail(VB_E_USAGE, "%s", err ?: "bad value");
        if (r < 0)
                return vb_cli_fail(vb_error_from_errno(r), "%s", err ?: strerror(-r));

        k = vb_config_find(key);
        /* vbakd reads the file at its start: a [restart] key is one it uses
         * from then on (threads, directories), which a running daemon cannot
         * change; the others apply to the work started after it is read. */
        if (k->needs_restart)
                snprintf(applies, sizeof(applies), "restart vbakd to apply (systemctl restart vbakd)");
        else
                snprintf(applies, sizeof(applies),
                         "applies to new work once vbakd reads the file (at its start: systemctl restart vbakd)");
        if (vb_cli_json) {
                static const char *const kinds[] = {
                        [VB_CONFIG_EDIT_REPLACED] = "replaced",
                        [VB_CONFIG_EDIT_UNCOMMENTED] = "uncommented",
                        [VB_CONFIG_EDIT_APPENDED] = "appended",
                        [VB_CONFIG_EDIT_UNCHANGED] = "unchanged",
                };
                return vb_cli_print_json(json_pack("{s:s, s:s, s:s, s:i, s:s, s:b, s:b}", "key", k->name, "value",
                                                   value, "file", path, "line", (int)edit.line, "edit",
                                                   kinds[edit.kind], "created", edit.created, "needs_restart",
                                                   k->needs_restart));
        }
        printf("%s = %s; %s\n", k->name, value, applies);
        if (edit.created)
                printf("(created %s)\n", path);
        return 0;
}

int vb_cli_config(int argc, char **argv)
{
        if (argc < 2) {
                help(stderr);
                return VB_E_USAGE;
        }
        if (streq(argv[1], "--help") || streq(argv[1], "-h") || streq(argv[1], "help")) {
                help(stdout);
                return 0;
        }
        if (streq(argv[1], "show"))
                return show(argc - 1, argv + 1);
        if (streq(argv[1], "set"))
                return set(argc - 1, argv + 1);
        return vb_cli_fail(VB_E_USAGE, "config: unknown verb '%s' (show, set; see vbak config --help)", argv[1]);
}
