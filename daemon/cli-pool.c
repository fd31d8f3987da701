/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cli-pool.c -- `vbak pool ...`: works on a storage pool directly, without
 * the daemon: init, backup, restore, list, verify, gc, prune, stats.
 *
 * Every verb prints a short human summary, or one JSON document on stdout
 * with --json; errors go to stderr (and, with --json, as {"error": ...} on
 * stdout) and the exit code is the stable code of docs/error-codes.md.
 */
#include "daemon/cli-pool.h"

#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <uv.h>

#include "daemon/cli-common.h"
#include "daemon/cli-daemon-pool.h"
#include "daemon/error.h"
#include "daemon/progress.h"
#include "daemon/util.h"
#include "storagepool/copy.h"
#include "storagepool/fs.h"
#include "storagepool/pipeline.h"
#include "storagepool/retention.h"
#include "storagepool/sp.h"
#include "storagepool/tape.h"
#include "storagepool/tapedev.h"
#include "daemon/cli-net.h"

static int fail_errno(int r, const char *what)
{
        return vb_cli_fail(vb_error_from_errno(r), "%s: %s", what, strerror(-r));
}

static int open_pool(const char *path, sp_pool **ret)
{
        int r = sp_pool_open(path, ret);

        if (r == -ENOENT)
                return vb_cli_fail(VB_E_NOT_FOUND, "%s: no pool here (pool.json not found)", path);
        if (r == -EBADMSG)
                return vb_cli_fail(VB_E_POOL_FORMAT, "%s: pool.json is damaged", path);
        if (r == -EPROTONOSUPPORT)
                return vb_cli_fail(VB_E_POOL_FORMAT, "%s: pool format version or type not supported", path);
        if (r < 0)
                return fail_errno(r, path);
        return 0;
}

static double ratio(uint64_t a, uint64_t b)
{
        return b ? (double)a / (double)b : 0.0;
}

/* --- init --------------------------------------------------------------- */

static const char init_help[] = "Usage: vbak pool init PATH [OPTIONS]\n"
                                "Creates a storage pool in PATH (a new or empty folder).\n\n"
                                "  --type dedup|standard|tape   pool type (default dedup)\n"
                                "  --chunk-size SIZE            1M, 2M or 4M (default 1M)\n"
                                "  --compression none|fast|zstd:N  (default fast; N is 1-19)\n"
                                "  --fsync always|none          durability policy (default always)\n"
                                "  --json                       print the result as JSON\n"
                                "Tape pools (--type tape; PATH keeps the catalog; docs/tape.md):\n"
                                "  --device /dev/nstN|DIR       the drive's non-rewinding node, or a folder of\n"
                                "                               file-backed volumes (LABEL.vtape)\n"
                                "  --volumes L1,L2,...          the media pool: volume labels, used in order\n"
                                "  --volume-size SIZE           a file-backed volume's capacity (default: no limit)\n"
                                "Object pools (--type object; PATH keeps the settings and caches):\n"
                                "  --endpoint URL               the S3-compatible store, http[s]://HOST[:PORT]\n"
                                "  --bucket B                   its bucket (created when missing; one that holds\n"
                                "                               a pool already is joined)\n"
                                "  --region R                   (default us-east-1)\n"
                                "  --prefix P                   the pool's keys under P/ in the bucket\n"
                                "  --access-key-file F          the access key id (the file's first line)\n"
                                "  --secret-key-file F          the secret key (mode 0600; the path is recorded)\n"
                                "  --requests N                 requests in flight (default 16)\n"
                                "  --part-size SIZE             objects larger go up in parts (default 16M, min 5M)\n"
                                "  --rate SIZE                  bytes per second to and from the store, all\n"
                                "                               requests together (e.g. 50M; default unlimited)\n";

/* Tape pools: the media pool's labels from "L1,L2,..." (pointing into
 * *ret_text). 0, or the error printed and its code. */
static int parse_volumes(const char *arg, sp_options *o, char **ret_text, const char ***ret_v)
{
        char *save = NULL;

        free(*ret_text);
        free(*ret_v);
        o->n_volumes = 0;
        *ret_text = strdup(arg);
        *ret_v = calloc(strlen(arg) / 2 + 2, sizeof(**ret_v));
        if (!*ret_text || !*ret_v)
                return vb_cli_fail(VB_E_FAILED, "out of memory");
        for (char *l = strtok_r(*ret_text, ",", &save); l; l = strtok_r(NULL, ",", &save)) {
                if (!sp_tape_label_is_valid(l))
                        return vb_cli_fail(VB_E_USAGE, "volume label '%s': use 1-32 letters, digits, '.', '_' or '-'",
                                           l);
                for (size_t k = 0; k < o->n_volumes; k++)
                        if (streq((*ret_v)[k], l))
                                return vb_cli_fail(VB_E_USAGE, "volume %s is named twice", l);
                (*ret_v)[o->n_volumes++] = l;
        }
        o->volumes = *ret_v;
        return 0;
}

enum {
        OPT_TAPE_DEVICE = 0x1000,
        OPT_TAPE_VOLUMES,
        OPT_TAPE_VOLUME_SIZE
};

static int cmd_init(int argc, char **argv)
{
        _cleanup_free_ char *tape_labels = NULL;
        _cleanup_free_ const char **tape_volumes = NULL;
        static const struct option opts[] = {
                { "type", required_argument, NULL, 't' },
                { "chunk-size", required_argument, NULL, 'c' },
                { "compression", required_argument, NULL, 'z' },
                { "fsync", required_argument, NULL, 'f' },
                { "device", required_argument, NULL, OPT_TAPE_DEVICE },
                { "volumes", required_argument, NULL, OPT_TAPE_VOLUMES },
                { "volume-size", required_argument, NULL, OPT_TAPE_VOLUME_SIZE },
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                { "endpoint", required_argument, NULL, 'E' },
                { "bucket", required_argument, NULL, 'B' },
                { "region", required_argument, NULL, 'R' },
                { "prefix", required_argument, NULL, 'P' },
                { "access-key-file", required_argument, NULL, 'A' },
                { "secret-key-file", required_argument, NULL, 'S' },
                { "requests", required_argument, NULL, 'N' },
                { "part-size", required_argument, NULL, 'Z' },
                { "rate", required_argument, NULL, 'T' },
                {},
        };
        sp_options o = SP_OPTIONS_DEFAULT;
        _cleanup_free_ char *access_key = NULL, *secret_file = NULL;
        uint64_t size;
        int c, r;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (c) {
                case 't':
                        if (!sp_driver_find(optarg))
                                return vb_cli_fail(VB_E_USAGE,
                                                   "unknown pool type '%s' (dedup, standard, object or tape)", optarg);
                        o.type = optarg;
                        break;
                case 'c':
                        if (vb_parse_size(optarg, &size) < 0 || size < SP_CHUNK_SIZE_MIN || size > SP_CHUNK_SIZE_MAX ||
                            (size & (size - 1)))
                                return vb_cli_fail(VB_E_USAGE, "bad chunk size '%s' (1M, 2M or 4M)", optarg);
                        o.chunk_size = (uint32_t)size;
                        break;
                case 'z':
                        if (dd_compression_from_string(optarg, &o.compression) < 0)
                                return vb_cli_fail(VB_E_USAGE, "bad compression '%s' (none, fast or zstd:1-19)",
                                                   optarg);
                        break;
                case 'f':
                        o.fsync = sp_fsync_from_string(optarg);
                        if (o.fsync < 0)
                                return vb_cli_fail(VB_E_USAGE, "bad fsync policy '%s' (always or none)", optarg);
                        break;
                case 'j':
                        vb_cli_json = true;
                        break;
                case 'h':
                        fputs(init_help, stdout);
                        return 0;
                case 'E':
                        o.endpoint = optarg;
                        break;
                case 'B':
                        o.bucket = optarg;
                        break;
                case 'R':
                        o.region = optarg;
                        break;
                case 'P':
                        o.prefix = optarg;
                        break;
                case 'A':
                        free(access_key);
                        access_key = NULL;
                        r = vb_cli_read_secret_file(optarg, &access_key);
                        if (r)
                                return r;
                        o.access_key = access_key;
                        break;
                case 'S':
                        /* Recorded as a path: the pool is opened again and again. */
                        free(secret_file);
                        secret_file = realpath(optarg, NULL);
                        if (!secret_file)
                                return vb_cli_fail(errno == ENOENT ? VB_E_NOT_FOUND : vb_error_from_errno(-errno),
                                                   "%s: %s", optarg, strerror(errno));
                        o.secret_key_file = secret_file;
                        break;
                case 'N':
                        if (vb_parse_size(optarg, &size) < 0 || size < 1 || size > 256)
                                return vb_cli_fail(VB_E_USAGE, "bad --requests '%s' (1-256)", optarg);
                        o.requests = (unsigned)size;
                        break;
                case 'Z':
                        if (vb_parse_size(optarg, &size) < 0 || size < (5u << 20) || size > (5ull << 30))
                                return vb_cli_fail(VB_E_USAGE, "bad --part-size '%s' (5M-5G)", optarg);
                        o.part_size = size;
                        break;
                case 'T':
                        if (vb_parse_size(optarg, &size) < 0)
                                return vb_cli_fail(VB_E_USAGE, "bad --rate '%s' (bytes per second: 50M, 1G)", optarg);
                        o.rate = size;
                        break;
                case OPT_TAPE_DEVICE:
                        o.device = optarg;
                        break;
                case OPT_TAPE_VOLUMES:
                        r = parse_volumes(optarg, &o, &tape_labels, &tape_volumes);
                        if (r)
                                return r;
                        break;
                case OPT_TAPE_VOLUME_SIZE:
                        if (vb_parse_size(optarg, &o.volume_size) < 0 || o.volume_size == 0)
                                return vb_cli_fail(VB_E_USAGE, "bad --volume-size '%s'", optarg);
                        break;
                default:
                        return VB_E_USAGE;
                }
        }
        if (optind + 1 != argc)
                return vb_cli_fail(VB_E_USAGE, "pool init needs exactly one PATH (see --help)");
        if (streq(o.type, "tape") && (!o.device || o.n_volumes == 0))
                return vb_cli_fail(VB_E_USAGE, "a tape pool needs --device and --volumes (see --help)");
        if (!streq(o.type, "tape") && (o.device || o.n_volumes || o.volume_size))
                return vb_cli_fail(VB_E_USAGE, "--device, --volumes and --volume-size are for --type tape");
        if (streq(o.type, "object") && (!o.endpoint || !o.bucket || !o.access_key || !o.secret_key_file))
                return vb_cli_fail(VB_E_USAGE, "an object pool needs --endpoint, --bucket, --access-key-file and "
                                               "--secret-key-file (see --help)");
        r = sp_pool_create(argv[optind], &o);
        if (r == -EEXIST)
                return vb_cli_fail(VB_E_EXISTS, "%s: a pool exists here already", argv[optind]);
        if (r < 0)
                return fail_errno(r, argv[optind]);
        if (vb_cli_json) {
                char comp[32];
                return vb_cli_print_json(json_pack("{s:s, s:s, s:I, s:s, s:s}", "path", argv[optind], "type", o.type,
                                                   "chunk_size", (json_int_t)o.chunk_size, "compression",
                                                   dd_compression_to_string(o.compression, comp, sizeof(comp)), "fsync",
                                                   sp_fsync_to_string(o.fsync)));
        }
        printf("Created %s pool at %s\n", o.type, argv[optind]);
        return 0;
}

/* --- backup ------------------------------------------------------------- */

static const char backup_help[] =
        "Usage: vbak pool backup PATH --vm NAME --disk NAME --source SOURCE [OPTIONS]\n"
        "Backs up one disk into the pool. A full backup reads only allocated data; an\n"
        "incremental reads only the changed extents. SOURCE is a disk image (a file or\n"
        "block device), an NBD export (nbd://HOST:PORT/EXPORT, nbd+unix:///EXPORT?socket=S)\n"
        "or a disk service (cvd://HOST:8192/VM/PATH/OF/IMAGE[?snapshot=S]).\n\n"
        "  --vm NAME           the VM the disk belongs to\n"
        "  --title TITLE       the VM's display title (optional)\n"
        "  --disk NAME         the disk's name in the restore point (e.g. vda)\n"
        "  --source SOURCE     where to read the disk\n"
        "  --changed EXTENTS   files: an incremental of the 'OFFSET LENGTH' lines (bytes) in EXTENTS\n"
        "  --bitmap NAME       nbd: an incremental of what the export's dirty bitmap NAME marks\n"
        "  --since CHECKPOINT  cvd: an incremental of the changes since CHECKPOINT\n"
        "  --parent ID|latest  incremental: the restore point the changes are relative to\n"
        "  --checkpoint NAME   the checkpoint the next incremental starts from (cvd: created now;\n"
        "                      nbd: recorded in the restore point)\n"
        "  --json              print the result as JSON\n\n";

struct file_io {
        int fd;
        bool sparse; /* the target reads as zeros: skip zero blocks */
};

#define SPARSE_BLOCK 4096

static int file_read(void *userdata, uint64_t offset, void *buf, size_t len)
{
        struct file_io *f = userdata;
        int r = vb_pread_all(f->fd, buf, len, (off_t)offset);

        /* A source that got shorter reads as zeros past its end. */
        if (r == -EBADMSG) {
                memset(buf, 0, len);
                return 0;
        }
        return r;
}

static int file_write(void *userdata, uint64_t offset, const void *buf, size_t len)
{
        struct file_io *f = userdata;
        const uint8_t *p = buf;

        if (!f->sparse)
                return vb_pwrite_all(f->fd, buf, len, (off_t)offset);
        /* Keep a new file sparse: write runs of non-zero 4 KiB blocks only. */
        for (size_t at = 0; at < len;) {
                size_t n = MIN(SPARSE_BLOCK, len - at), run = 0;
                int r;

                if (dd_is_zero(p + at, n)) {
                        at += n;
                        continue;
                }
                while (at + run < len) {
                        size_t m = MIN(SPARSE_BLOCK, len - at - run);
                        if (run > 0 && dd_is_zero(p + at + run, m))
                                break;
                        run += m;
                }
                r = vb_pwrite_all(f->fd, p + at, run, (off_t)(offset + at));
                if (r < 0)
                        return r;
                at += run;
        }
        return 0;
}

static int file_zero(void *userdata, uint64_t offset, size_t len)
{
        struct file_io *f = userdata;
        static const uint8_t zeros[64 * 1024];

        if (fallocate(f->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)len) == 0)
                return 0;
        for (size_t done = 0; done < len;) {
                size_t n = MIN(len - done, sizeof(zeros));
                int r = vb_pwrite_all(f->fd, zeros, n, (off_t)(offset + done));
                if (r < 0)
                        return r;
                done += n;
        }
        return 0;
}

static int device_size(int fd, uint64_t *ret)
{
        struct stat st;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISREG(st.st_mode)) {
                *ret = (uint64_t)st.st_size;
                return 0;
        }
        if (S_ISBLK(st.st_mode))
                return ioctl(fd, BLKGETSIZE64, ret) < 0 ? -errno : 0;
        return -EINVAL;
}

struct run_state {
        int r;
        sp_transfer_result res;
        bool *done_flag; /* set when the transfer is over (network transfers keep the loop alive) */
        uv_loop_t *loop;
};

static void transfer_done(void *userdata, int r, const sp_transfer_result *res)
{
        struct run_state *st = userdata;

        st->r = r;
        st->res = *res;
        if (st->done_flag) {
                *st->done_flag = true;
                uv_stop(st->loop);
        }
}

static int load_extents(const char *path, uint64_t size, dd_extents *e)
{
        _cleanup_free_ char *text = NULL;
        size_t len;
        unsigned line = 0;
        int r;

        r = vb_read_file_at(AT_FDCWD, path, 1u << 30, &text, &len);
        if (r < 0)
                return fail_errno(r, path);
        r = dd_extents_parse(text, len, e, &line);
        if (r < 0)
                return vb_cli_fail(VB_E_USAGE, "%s:%u: expected 'OFFSET LENGTH'", path, line);
        r = dd_extents_normalize(e, size);
        if (r < 0)
                return vb_cli_fail(VB_E_USAGE, "%s: an extent ends past the end of the disk (%" PRIu64 " bytes)", path,
                                   size);
        return 0;
}

/* Joins the command's own options with the transport's. */
static struct option *with_net_options(const struct option *own, size_t n_own)
{
        struct option *v = calloc(n_own + vb_net_n_options + 1, sizeof(*v));

        if (!v)
                return NULL;
        memcpy(v, own, n_own * sizeof(*v));
        memcpy(v + n_own, vb_net_options, vb_net_n_options * sizeof(*v));
        return v;
}

/* Where a backup reads: a local file, or a disk over the network. */
typedef struct backup_source {
        const char *name;
        struct file_io file;
        tp_disk *disk;
        uint64_t size;
} backup_source;

static int open_file_source(backup_source *bs)
{
        int fd = open(bs->name, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return vb_cli_fail(errno == ENOENT ? VB_E_NOT_FOUND : VB_E_SOURCE, "%s: %s", bs->name, strerror(errno));
        bs->file.fd = fd;
        if (device_size(fd, &bs->size) < 0)
                return vb_cli_fail(VB_E_SOURCE, "%s: not a regular file or block device", bs->name);
        return 0;
}

static int open_net_source(uv_loop_t *loop, vb_net_opts *no, backup_source *bs)
{
        _cleanup_free_ char *msg = NULL;
        vb_error code;
        int r = vb_net_open(loop, no, bs->name, false, &bs->disk, &code, &msg);

        if (r == -EPROTONOSUPPORT)
                return vb_cli_fail(VB_E_USAGE, "%s: unknown source; use a file, nbd://, nbd+unix:// or cvd://",
                                   bs->name);
        if (r < 0)
                return vb_cli_fail(code ? code : vb_error_from_net_errno(r), "%s", msg ? msg : strerror(-r));
        bs->size = tp_disk_size(bs->disk);
        return 0;
}

/* Checks the parent of an incremental; 0 when usable, a vb error code
 * (already reported) otherwise. */
static int check_parent(sp_pool *p, const char *parent_arg, const char *vm, const char *disk, uint64_t size,
                        dd_manifest **ret)
{
        const dd_manifest_disk *pd;
        dd_manifest *parent = NULL;
        int r = sp_pool_find(p, parent_arg, vm, &parent);

        if (r == -ENOENT)
                return vb_cli_fail(VB_E_PARENT, "parent restore point '%s' of VM %s not found", parent_arg, vm);
        if (r < 0)
                return fail_errno(r, "parent restore point");
        *ret = parent;
        if (!streq_ptr(parent->vm.name, vm))
                return vb_cli_fail(VB_E_PARENT, "parent restore point %s belongs to VM %s, not %s", parent->id,
                                   parent->vm.name, vm);
        pd = dd_manifest_find_disk(parent, disk);
        if (!pd)
                return vb_cli_fail(VB_E_PARENT, "parent restore point %s has no disk %s", parent->id, disk);
        if (pd->size != size)
                return vb_cli_fail(VB_E_PARENT,
                                   "disk %s changed size since restore point %s (%" PRIu64 " -> %" PRIu64
                                   " bytes): run a full backup",
                                   disk, parent->id, pd->size, size);
        return 0;
}

static void json_add_net(json_t *j, tp_disk *disk, const dd_extents *plan, bool incremental)
{
        const tp_nbd_stats *ns = tp_disk_stats(disk);
        const char *const *notes = tp_disk_notes(disk);
        json_t *a = json_array();

        for (size_t i = 0; notes[i]; i++)
                json_array_append_new(a, json_string(notes[i]));
        json_object_set_new(j, "notes", a);
        if (incremental)
                json_object_set_new(j, "bytes_dirty", json_integer((json_int_t)dd_extents_total(plan)));
        if (ns)
                json_object_set_new(j, "transport",
                                    json_pack("{s:I, s:I, s:I, s:I, s:i, s:i}", "bytes_received",
                                              (json_int_t)ns->bytes_read, "bytes_sent", (json_int_t)ns->bytes_written,
                                              "bytes_resent", (json_int_t)ns->bytes_resent, "requests",
                                              (json_int_t)ns->requests, "cuts", (int)ns->cuts, "reconnects",
                                              (int)ns->reconnects));
}

static int cmd_backup(int argc, char **argv)
{
        static const struct option own[] = {
                { "vm", required_argument, NULL, 'v' },
                { "title", required_argument, NULL, 'T' },
                { "disk", required_argument, NULL, 'd' },
                { "source", required_argument, NULL, 's' },
                { "changed", required_argument, NULL, 'c' },
                { "parent", required_argument, NULL, 'p' },
                { "bitmap", required_argument, NULL, 'b' },
                { "since", required_argument, NULL, 'S' },
                { "checkpoint", required_argument, NULL, 'C' },
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
        };
        _cleanup_free_ struct option *opts = with_net_options(own, ELEMENTSOF(own));
        const char *vm = NULL, *title = NULL, *disk = NULL, *changed = NULL, *parent_arg = NULL, *since = NULL,
                   *checkpoint = NULL;
        _cleanup_(sp_pool_closep) sp_pool *p = NULL;
        _cleanup_(dd_manifest_freep) dd_manifest *tmpl = NULL, *parent = NULL, *done_m = NULL;
        dd_extents extents = DD_EXTENTS_INIT;
        backup_source bs = { .file = { -1, false } };
        vb_net_opts no;
        sp_source src = { .read = file_read, .userdata = &bs.file };
        sp_writer *w = NULL;
        sp_disk_writer *dw = NULL;
        struct run_state st = { 0 };
        vb_progress prog;
        uv_loop_t loop;
        bool network, incremental = false, loop_ready = false;
        int c, r, code = 0;

        if (!opts)
                return vb_cli_fail(VB_E_FAILED, "out of memory");
        vb_net_opts_init(&no);
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                _cleanup_free_ char *err = NULL;

                switch (c) {
                case 'v':
                        vm = optarg;
                        break;
                case 'T':
                        title = optarg;
                        break;
                case 'd':
                        disk = optarg;
                        break;
                case 's':
                        bs.name = optarg;
                        break;
                case 'c':
                        changed = optarg;
                        break;
                case 'p':
                        parent_arg = optarg;
                        break;
                case 'b':
                case 'S':
                        since = optarg;
                        break;
                case 'C':
                        checkpoint = optarg;
                        break;
                case 'j':
                        vb_cli_json = true;
                        break;
                case 'h':
                        fputs(backup_help, stdout);
                        fputs(vb_net_help, stdout);
                        return 0;
                default:
                        r = vb_net_parse(&no, c, optarg, &err);
                        if (r == 1)
                                break;
                        vb_net_opts_clear(&no);
                        return r < 0 ? vb_cli_fail(VB_E_USAGE, "%s", err ? err : "bad option") : VB_E_USAGE;
                }
        }
        if (optind + 1 != argc || !vm || !disk || !bs.name) {
                code = vb_cli_fail(VB_E_USAGE, "pool backup needs PATH, --vm, --disk and --source (see --help)");
                goto out;
        }
        if (!dd_name_is_safe(vm)) {
                code = vb_cli_fail(VB_E_USAGE, "VM name '%s': use 1-64 letters, digits, '.', '_' or '-'", vm);
                goto out;
        }
        if (!dd_disk_name_is_safe(disk)) {
                code = vb_cli_fail(VB_E_USAGE, "disk name '%s': use 1-48 letters, digits, '.', '_' or '-'", disk);
                goto out;
        }
        network = vb_is_network_url(bs.name);
        if (network ? changed != NULL : since != NULL) {
                code = vb_cli_fail(VB_E_USAGE, "%s",
                                   network ? "--changed is for file sources; use --bitmap or --since"
                                           : "--bitmap and --since are for nbd:// and cvd:// sources");
                goto out;
        }
        if (!(changed || since) != !parent_arg) {
                code = vb_cli_fail(VB_E_USAGE, "an incremental needs --parent and one of --changed, --bitmap, --since");
                goto out;
        }
        if ((since && !dd_name_is_safe(since)) || (checkpoint && !dd_name_is_safe(checkpoint))) {
                code = vb_cli_fail(VB_E_USAGE, "checkpoint names: use 1-64 letters, digits, '.', '_' or '-'");
                goto out;
        }
        code = open_pool(argv[optind], &p);
        if (code)
                goto out;
        r = uv_loop_init(&loop);
        if (r < 0) {
                code = fail_errno(r, "event loop");
                goto out;
        }
        loop_ready = true;
        if (network) {
                no.disk.since = since;
                no.disk.checkpoint = checkpoint;
                code = open_net_source(&loop, &no, &bs);
        } else {
                code = open_file_source(&bs);
        }
        if (code)
                goto out;

        tmpl = dd_manifest_new();
        if (!tmpl || !(tmpl->vm.name = strdup(vm)) || !(tmpl->vm.platform = strdup(SP_PLATFORM_LOCAL)) ||
            !(tmpl->consistency = strdup("crash")) || (title && !(tmpl->vm.title = strdup(title))) ||
            (checkpoint && !(tmpl->checkpoint = strdup(checkpoint)))) {
                code = vb_cli_fail(VB_E_FAILED, "out of memory");
                goto out;
        }
        tmpl->time_start = time(NULL);
        if (parent_arg) {
                code = check_parent(p, parent_arg, vm, disk, bs.size, &parent);
                if (code)
                        goto out;
                incremental = true;
        }
        if (network && incremental && !streq_ptr(parent->checkpoint, since)) {
                /* Never trust a bitmap the parent was not taken at. */
                tp_disk_add_note(bs.disk,
                                 "restore point %s was taken at checkpoint %s, not %s: reading all allocated data",
                                 parent->id, parent->checkpoint ? parent->checkpoint : "(none)", since);
                incremental = false;
        }
        if (network) {
                _cleanup_free_ char *msg = NULL;
                bool planned_incremental = false;

                r = vb_net_plan(&loop, bs.disk, incremental, &extents, &planned_incremental, &msg);
                if (r < 0) {
                        code = vb_cli_fail(vb_error_from_net_errno(r), "%s: cannot map the disk: %s", bs.name,
                                           msg ? msg : strerror(-r));
                        goto out;
                }
                incremental = planned_incremental;
                r = dd_extents_normalize(&extents, bs.size);
                if (r < 0) {
                        code = vb_cli_fail(VB_E_SOURCE, "%s: the server's extent map is out of range", bs.name);
                        goto out;
                }
                tp_disk_source(bs.disk, &src);
        } else if (changed) {
                code = load_extents(changed, bs.size, &extents);
                if (code)
                        goto out;
        } else {
                r = dd_extents_from_fd(bs.file.fd, bs.size, &extents);
                if (r < 0) {
                        code = vb_cli_fail(VB_E_SOURCE, "%s: cannot map allocated data: %s", bs.name, strerror(-r));
                        goto out;
                }
        }
        tmpl->type = incremental ? DD_BACKUP_INCREMENTAL : DD_BACKUP_FULL;
        if (incremental && !(tmpl->parent = strdup(parent->id))) {
                code = vb_cli_fail(VB_E_FAILED, "out of memory");
                goto out;
        }

        r = p->drv->begin(p, tmpl, &w);
        if (r < 0) {
                code = fail_errno(r, "cannot start the restore point");
                goto out;
        }
        r = p->drv->disk_begin(w, disk, bs.size, &dw);
        if (r < 0) {
                p->drv->abort(w);
                code = r == -EBADMSG ? vb_cli_fail(VB_E_PARENT, "the parent's index of disk %s is damaged", disk)
                                     : fail_errno(r, "cannot start the disk");
                goto out;
        }
        vb_progress_init(&prog, "backup", false);
        {
                sp_pipeline_opts po = { .window = network ? 16 : 0, .progress = vb_progress_update, .userdata = &prog };
                bool finished = false;

                st.done_flag = &finished;
                st.loop = &loop;
                r = sp_backup_start(&loop, dw, &src, &extents, &po, transfer_done, &st);
                if (r >= 0)
                        r = vb_run_until(&loop, &finished);
        }
        vb_progress_done(&prog);
        if (r >= 0)
                r = st.r;
        if (r < 0) {
                const char *why = network ? tp_nbd_error_message(tp_disk_nbd(bs.disk)) : NULL;

                p->drv->disk_abort(dw);
                p->drv->abort(w);
                if (r == -ENODATA || r == -EBADMSG)
                        code = vb_cli_fail(vb_error_from_errno(r),
                                           "disk %s offset %" PRIu64 ": the parent's chunk there is %s", disk,
                                           st.res.failed_offset, r == -ENODATA ? "missing" : "damaged");
                else if (r == -ENOSPC || r == -EDQUOT)
                        code = vb_cli_fail(VB_E_NO_SPACE, "the pool's file system is full; nothing was committed");
                else if (why)
                        code = vb_cli_fail(vb_error_from_net_errno(r), "%s; nothing was committed", why);
                else
                        code = vb_cli_fail(network ? vb_error_from_net_errno(r) : vb_error_from_errno(r),
                                           "backup failed, nothing was committed: %s", strerror(-r));
                goto out;
        }
        dw->bytes_read = st.res.bytes_done;
        r = p->drv->disk_end(dw);
        if (r < 0) {
                p->drv->abort(w);
                code = fail_errno(r, "cannot finish the disk's index; nothing was committed");
                goto out;
        }
        r = p->drv->commit(w, &done_m);
        if (r < 0) {
                code = fail_errno(r, "cannot commit the restore point");
                goto out;
        }
        if (network) {
                _cleanup_free_ char *msg = NULL;

                r = vb_net_commit(&loop, bs.disk, &msg);
                if (r < 0)
                        fprintf(stderr, "vbak: warning: restore point %s committed, but %s\n", done_m->id,
                                msg ? msg : strerror(-r));
        }
        {
                const dd_manifest_disk *md = &done_m->disks[0];
                double secs = (double)st.res.seconds_ns / 1e9;

                if (vb_cli_json) {
                        json_t *j = json_pack(
                                "{s:s, s:s, s:s, s:s, s:o, s:o, s:s, s:I, s:I, s:I, s:I, s:I, s:f}", "id", done_m->id,
                                "vm", vm, "disk", disk, "type", dd_backup_type_to_string(done_m->type), "parent",
                                done_m->parent ? json_string(done_m->parent) : json_null(), "checkpoint",
                                done_m->checkpoint ? json_string(done_m->checkpoint) : json_null(), "pool_type",
                                p->drv->name, "logical_size", (json_int_t)md->size, "bytes_read",
                                (json_int_t)md->bytes_read, "bytes_new", (json_int_t)md->bytes_new, "bytes_stored",
                                (json_int_t)st.res.bytes_stored, "bytes_data", (json_int_t)md->bytes_data, "seconds",
                                secs);
                        if (j && network)
                                json_add_net(j, bs.disk, &extents, incremental);
                        code = vb_cli_print_json(j);
                } else {
                        char a[32], b[32], d[32];

                        if (network)
                                for (const char *const *n = tp_disk_notes(bs.disk); *n; n++)
                                        printf("Note: %s\n", *n);
                        printf("Restore point %s (%s) of %s/%s: read %s, new %s, size %s, %.2f s\n", done_m->id,
                               dd_backup_type_to_string(done_m->type), vm, disk,
                               vb_format_size(md->bytes_read, a, sizeof(a)),
                               vb_format_size(md->bytes_new, b, sizeof(b)), vb_format_size(md->size, d, sizeof(d)),
                               secs);
                        code = 0;
                }
        }
out:
        if (loop_ready) {
                vb_net_close(&loop, bs.disk);
                uv_run(&loop, UV_RUN_DEFAULT);
                uv_loop_close(&loop);
        }
        if (bs.file.fd >= 0)
                close(bs.file.fd);
        dd_extents_clear(&extents);
        vb_net_opts_clear(&no);
        return code;
}

/* --- restore ------------------------------------------------------------ */

static const char restore_help[] =
        "Usage: vbak pool restore PATH ID --disk NAME --target TARGET [--json]\n"
        "Restores one disk of restore point ID (or 'latest') to TARGET: a file, a block\n"
        "device, an NBD export (nbd://HOST:PORT/EXPORT, nbd+unix:///EXPORT?socket=S) or a\n"
        "disk service (cvd://HOST:8192/VM/PATH/OF/IMAGE, opened read-write). Every chunk is\n"
        "checked against its digest before it is written; zero chunks become write-zeroes\n"
        "(holes). A new file is written as FILE.partial and renamed when complete; an\n"
        "export is flushed at the end.\n\n";

static int restore_run(uv_loop_t *loop, sp_disk_reader *rd, const sp_target *dst, struct run_state *st)
{
        vb_progress prog;
        bool finished = false;
        sp_pipeline_opts po = { .progress = vb_progress_update, .userdata = &prog };
        int r;

        vb_progress_init(&prog, "restore", false);
        st->done_flag = &finished;
        st->loop = loop;
        r = sp_restore_start(loop, rd, dst, &po, transfer_done, st);
        if (r >= 0)
                r = vb_run_until(loop, &finished);
        vb_progress_done(&prog);
        return r >= 0 ? st->r : r;
}

static int cmd_restore(int argc, char **argv)
{
        static const struct option own[] = {
                { "disk", required_argument, NULL, 'd' }, { "target", required_argument, NULL, 't' },
                { "vm", required_argument, NULL, 'v' },   { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
        };
        _cleanup_free_ struct option *opts = with_net_options(own, ELEMENTSOF(own));
        const char *disk = NULL, *target = NULL, *vm = NULL;
        _cleanup_(sp_pool_closep) sp_pool *p = NULL;
        _cleanup_(dd_manifest_freep) dd_manifest *m = NULL;
        _cleanup_free_ char *partial = NULL;
        _cleanup_close_ int fd = -1;
        sp_disk_reader *rd = NULL;
        struct file_io io;
        sp_target dst = { .write = file_write, .userdata = &io };
        struct run_state st = { 0 };
        vb_net_opts no;
        tp_disk *td = NULL;
        uv_loop_t loop;
        bool loop_ready = false, network;
        struct stat tst;
        bool block = false;
        int c, r, code = 0;

        if (!opts)
                return vb_cli_fail(VB_E_FAILED, "out of memory");
        vb_net_opts_init(&no);
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                _cleanup_free_ char *err = NULL;

                switch (c) {
                case 'd':
                        disk = optarg;
                        break;
                case 't':
                        target = optarg;
                        break;
                case 'v':
                        vm = optarg;
                        break;
                case 'j':
                        vb_cli_json = true;
                        break;
                case 'h':
                        fputs(restore_help, stdout);
                        fputs(vb_net_help, stdout);
                        return 0;
                default:
                        r = vb_net_parse(&no, c, optarg, &err);
                        if (r == 1)
                                break;
                        vb_net_opts_clear(&no);
                        return r < 0 ? vb_cli_fail(VB_E_USAGE, "%s", err ? err : "bad option") : VB_E_USAGE;
                }
        }
        if (optind + 2 != argc || !disk || !target) {
                code = vb_cli_fail(VB_E_USAGE, "pool restore needs PATH, ID, --disk and --target (see --help)");
                goto out;
        }
        network = vb_is_network_url(target);
        code = open_pool(argv[optind], &p);
        if (code)
                goto out;
        r = sp_pool_find(p, argv[optind + 1], vm, &m);
        if (r == -ENOENT) {
                code = vb_cli_fail(VB_E_NOT_FOUND, "restore point '%s' not found", argv[optind + 1]);
                goto out;
        }
        if (r < 0) {
                code = fail_errno(r, "restore point");
                goto out;
        }
        r = p->drv->reader_open(p, m, disk, &rd);
        if (r == -ENOENT) {
                code = vb_cli_fail(VB_E_NOT_FOUND, "restore point %s has no disk %s", m->id, disk);
                goto out;
        }
        if (r < 0) {
                code = vb_cli_fail(vb_error_from_errno(r), "restore point %s disk %s: %s", m->id, disk,
                                   r == -EBADMSG ? "its index is damaged" : strerror(-r));
                goto out;
        }
        r = uv_loop_init(&loop);
        if (r < 0) {
                code = fail_errno(r, "event loop");
                goto out;
        }
        loop_ready = true;

        if (network) {
                _cleanup_free_ char *msg = NULL;
                vb_error vcode;

                r = vb_net_open(&loop, &no, target, true, &td, &vcode, &msg);
                if (r == -EPROTONOSUPPORT) {
                        code = vb_cli_fail(VB_E_USAGE, "%s: unknown target; use a file, nbd://, nbd+unix:// or cvd://",
                                           target);
                        goto out;
                }
                if (r < 0) {
                        code = vb_cli_fail(vcode         ? vcode
                                           : r == -EROFS ? VB_E_TARGET
                                                         : vb_error_from_net_errno(r),
                                           "%s", msg ? msg : strerror(-r));
                        goto out;
                }
                if (tp_disk_size(td) < rd->size) {
                        code = vb_cli_fail(VB_E_TARGET, "%s holds %" PRIu64 " bytes, the disk needs %" PRIu64, target,
                                           tp_disk_size(td), rd->size);
                        goto out;
                }
                tp_disk_target(td, &dst);
        } else {
                block = stat(target, &tst) == 0 && S_ISBLK(tst.st_mode);
                if (block) {
                        fd = open(target, O_WRONLY | O_CLOEXEC);
                        dst.zero = file_zero;
                } else {
                        if (asprintf(&partial, "%s.partial", target) < 0) {
                                code = vb_cli_fail(VB_E_FAILED, "out of memory");
                                goto out;
                        }
                        fd = open(partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                }
                if (fd < 0 || (!block && ftruncate(fd, (off_t)rd->size) < 0)) {
                        code = vb_cli_fail(errno == ENOSPC ? VB_E_NO_SPACE : VB_E_TARGET, "%s: %s",
                                           partial ? partial : target, strerror(errno));
                        goto out;
                }
                io.fd = fd;
                io.sparse = !block;
        }
        r = restore_run(&loop, rd, &dst, &st);
        if (r >= 0 && fd >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r < 0) {
                const char *net_why = network ? tp_nbd_error_message(tp_disk_nbd(td)) : NULL;
                const char *what = r == -EBADMSG   ? "a chunk is damaged (digest mismatch)"
                                   : r == -ENODATA ? "a chunk is missing"
                                   : net_why       ? net_why
                                                   : strerror(-r);
                vb_error e = r == -EBADMSG || r == -ENODATA ? vb_error_from_errno(r)
                             : r == -ENOSPC                 ? VB_E_NO_SPACE
                             : network                      ? vb_error_from_net_errno(r)
                                                            : VB_E_TARGET;
                code = vb_cli_fail(e, "restore point %s disk %s offset %" PRIu64 ": %s; %s is incomplete", m->id, disk,
                                   st.res.failed_offset, what, partial ? partial : target);
                goto out;
        }
        if (partial && rename(partial, target) < 0) {
                code = vb_cli_fail(VB_E_TARGET, "%s: %s", target, strerror(errno));
                goto out;
        }
        if (vb_cli_json) {
                json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:I, s:f}", "id", m->id, "disk", disk, "target", target,
                                      "size", (json_int_t)rd->size, "bytes_written", (json_int_t)st.res.bytes_done,
                                      "seconds", (double)st.res.seconds_ns / 1e9);
                if (j && network)
                        json_add_net(j, td, NULL, false);
                code = vb_cli_print_json(j);
        } else {
                char a[32];
                printf("Restored %s disk %s to %s (%s, %.2f s)\n", m->id, disk, target,
                       vb_format_size(rd->size, a, sizeof(a)), (double)st.res.seconds_ns / 1e9);
                code = 0;
        }
out:
        if (loop_ready) {
                vb_net_close(&loop, td);
                uv_run(&loop, UV_RUN_DEFAULT);
                uv_loop_close(&loop);
        }
        if (rd)
                p->drv->reader_close(rd);
        vb_net_opts_clear(&no);
        return code;
}

/* --- list --------------------------------------------------------------- */

/* Tape pools: where restore point id is on tape (into buf, and into j when
 * not NULL); "" for other pools. */
static void tape_where(sp_pool *p, const char *id, char *buf, size_t size, json_t *j)
{
        _cleanup_free_ char *volume = NULL;
        unsigned file = 0;

        buf[0] = '\0';
        if (!streq(p->drv->name, "tape") || sp_tape_locate(p, id, &volume, &file) < 0)
                return;
        snprintf(buf, size, "volume %s file %u", volume, file);
        if (j) {
                json_object_set_new(j, "volume", json_string(volume));
                json_object_set_new(j, "file", json_integer(file));
        }
}

static const char list_help[] = "Usage: vbak pool list PATH [--vm NAME] [--json]\n"
                                "Lists the committed restore points, oldest first.\n";

static void warn_problem(void *userdata, const sp_problem *pr)
{
        fprintf(stderr, "vbak: warning: %s %s: %s\n", pr->kind, pr->object, pr->detail ? pr->detail : "");
}

static json_t *manifest_summary(const dd_manifest *m)
{
        json_t *disks = json_array();

        for (size_t i = 0; disks && i < m->n_disks; i++)
                json_array_append_new(disks, json_pack("{s:s, s:I, s:I, s:I}", "name", m->disks[i].name, "size",
                                                       (json_int_t)m->disks[i].size, "bytes_read",
                                                       (json_int_t)m->disks[i].bytes_read, "bytes_new",
                                                       (json_int_t)m->disks[i].bytes_new));
        return json_pack("{s:s, s:s, s:o, s:o, s:s, s:o, s:I, s:I}", "id", m->id, "vm", m->vm.name, "title",
                         m->vm.title ? json_string(m->vm.title) : json_null(), "disks", disks ? disks : json_null(),
                         "type", dd_backup_type_to_string(m->type), "parent",
                         m->parent ? json_string(m->parent) : json_null(), "time_start", (json_int_t)m->time_start,
                         "time_end", (json_int_t)m->time_end);
}

static int cmd_list(int argc, char **argv)
{
        static const struct option opts[] = {
                { "vm", required_argument, NULL, 'v' },
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        _cleanup_(sp_pool_closep) sp_pool *p = NULL;
        const char *vm = NULL;
        dd_manifest **v = NULL;
        size_t n = 0;
        int c, r, code;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (c) {
                case 'v':
                        vm = optarg;
                        break;
                case 'j':
                        vb_cli_json = true;
                        break;
                case 'h':
                        fputs(list_help, stdout);
                        return 0;
                default:
                        return VB_E_USAGE;
                }
        }
        if (optind + 1 != argc)
                return vb_cli_fail(VB_E_USAGE, "pool list needs PATH (see --help)");
        code = open_pool(argv[optind], &p);
        if (code)
                return code;
        r = sp_pool_list(p, vm, warn_problem, NULL, &v, &n);
        if (r < 0)
                return fail_errno(r, "cannot list the pool");
        if (vb_cli_json) {
                json_t *a = json_array();
                for (size_t i = 0; a && i < n; i++) {
                        json_t *j = manifest_summary(v[i]);
                        char where[128];

                        tape_where(p, v[i]->id, where, sizeof(where), j);
                        json_array_append_new(a, j);
                }
                code = vb_cli_print_json(a);
        } else {
                printf("%-30s %-16s %-11s %-30s %s\n", "ID", "VM", "TYPE", "PARENT", "DISKS");
                for (size_t i = 0; i < n; i++) {
                        printf("%-30s %-16s %-11s %-30s", v[i]->id, v[i]->vm.name, dd_backup_type_to_string(v[i]->type),
                               v[i]->parent ? v[i]->parent : "-");
                        char where[128];

                        for (size_t k = 0; k < v[i]->n_disks; k++)
                                printf(" %s", v[i]->disks[k].name);
                        tape_where(p, v[i]->id, where, sizeof(where), NULL);
                        if (where[0])
                                printf("  (%s)", where); /* tape pools: where it is */
                        putchar('\n');
                }
        }
        sp_manifests_free(v, n);
        return code;
}

/* --- verify ------------------------------------------------------------- */

static const char verify_help[] = "Usage: vbak pool verify PATH [ID...] [--sample PERCENT] [--threads N] [--json]\n"
                                  "Reads stored data back and checks every digest; names each damaged or missing\n"
                                  "chunk and every restore point it breaks. Exits with code 6 when it finds any.\n";

struct verify_report {
        json_t *problems;
};

static void report_problem(void *userdata, const sp_problem *pr)
{
        struct verify_report *vr = userdata;
        json_t *rps = json_array();

        for (size_t i = 0; rps && i < pr->n_restore_points; i++)
                json_array_append_new(rps, json_string(pr->restore_points[i]));
        if (vb_cli_json)
                json_array_append_new(vr->problems, json_pack("{s:s, s:s, s:s, s:o}", "kind", pr->kind, "object",
                                                              pr->object, "detail", pr->detail ? pr->detail : "",
                                                              "restore_points", rps ? rps : json_null()));
        else {
                printf("%s %s: %s\n", pr->kind, pr->object, pr->detail ? pr->detail : "");
                for (size_t i = 0; i < pr->n_restore_points; i++)
                        printf("  breaks restore point %s\n", pr->restore_points[i]);
                json_decref(rps);
        }
}

static int cmd_verify(int argc, char **argv)
{
        static const struct option opts[] = {
                { "sample", required_argument, NULL, 's' },
                { "threads", required_argument, NULL, 't' },
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        _cleanup_(sp_pool_closep) sp_pool *p = NULL;
        struct verify_report vr = { .problems = json_array() };
        sp_verify_opts o = { .sample_percent = 100, .threads = 4, .problem = report_problem, .userdata = &vr };
        sp_verify_result res = { 0 };
        char *end;
        long v;
        int c, r, code;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (c) {
                case 's':
                        v = strtol(optarg, &end, 10);
                        if (*end == '%')
                                end++;
                        if (*end || v < 1 || v > 100) {
                                json_decref(vr.problems);
                                return vb_cli_fail(VB_E_USAGE, "bad sample '%s' (1-100 percent)", optarg);
                        }
                        o.sample_percent = (unsigned)v;
                        break;
                case 't':
                        v = strtol(optarg, &end, 10);
                        if (*end || v < 1 || v > 64) {
                                json_decref(vr.problems);
                                return vb_cli_fail(VB_E_USAGE, "bad thread count '%s' (1-64)", optarg);
                        }
                        o.threads = (unsigned)v;
                        break;
                case 'j':
                        vb_cli_json = true;
                        break;
                case 'h':
                        json_decref(vr.problems);
                        fputs(verify_help, stdout);
                        return 0;
                default:
                        json_decref(vr.problems);
                        return VB_E_USAGE;
                }
        }
        if (optind >= argc) {
                json_decref(vr.problems);
                return vb_cli_fail(VB_E_USAGE, "pool verify needs PATH (see --help)");
        }
        code = open_pool(argv[optind], &p);
        if (code) {
                json_decref(vr.problems);
                return code;
        }
        if (optind + 1 < argc) {
                o.ids = (const char *const *)&argv[optind + 1];
                o.n_ids = (size_t)(argc - optind - 1);
        }
        r = sp_pool_verify(p, &o, &res);
        if (r == -ENOENT) {
                json_decref(vr.problems);
                return vb_cli_fail(VB_E_NOT_FOUND, "a restore point given is not in the pool");
        }
        if (r < 0) {
                json_decref(vr.problems);
                return fail_errno(r, "verify");
        }
        if (vb_cli_json)
                vb_cli_print_json(json_pack(
                        "{s:I, s:I, s:I, s:I, s:I, s:o}", "restore_points", (json_int_t)res.restore_points,
                        "chunks_checked", (json_int_t)res.chunks_checked, "bytes_checked",
                        (json_int_t)res.bytes_checked, "problems", (json_int_t)res.problems, "broken_restore_points",
                        (json_int_t)res.broken_restore_points, "details", vr.problems));
        else {
                json_decref(vr.problems);
                printf("Verified %" PRIu64 " restore points, %" PRIu64 " chunks: %" PRIu64 " problems, %" PRIu64
                       " restore points broken\n",
                       res.restore_points, res.chunks_checked, res.problems, res.broken_restore_points);
        }
        if (res.problems > 0) {
                fprintf(stderr, "vbak: verify found %" PRIu64 " problems [E%d %s]\n", res.problems, VB_E_VERIFY,
                        vb_error_name(VB_E_VERIFY));
                return VB_E_VERIFY;
        }
        return 0;
}

/* --- gc ----------------------------------------------------------------- */

static const char gc_help[] = "Usage: vbak pool gc PATH [--grace DURATION] [--dry-run] [--json]\n"
                              "Removes chunks no restore point references and that are older than the grace\n"
                              "period (default 1h; e.g. 0, 30m, 2h, 7d), and what crashed backups left behind.\n"
                              "Safe while backups run.\n";

static int cmd_gc(int argc, char **argv)
{
        static const struct option opts[] = {
                { "grace", required_argument, NULL, 'g' },
                { "dry-run", no_argument, NULL, 'n' },
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        _cleanup_(sp_pool_closep) sp_pool *p = NULL;
        sp_gc_opts o = { .grace_seconds = 3600 };
        sp_gc_result res = { 0 };
        int c, r, code;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (c) {
                case 'g':
                        if (vb_parse_duration(optarg, &o.grace_seconds) < 0)
                                return vb_cli_fail(VB_E_USAGE, "bad grace period '%s' (e.g. 0, 30m, 2h, 7d)", optarg);
                        break;
                case 'n':
                        o.dry_run = true;
                        break;
                case 'j':
                        vb_cli_json = true;
                        break;
                case 'h':
                        fputs(gc_help, stdout);
                        return 0;
                default:
                        return VB_E_USAGE;
                }
        }
        if (optind + 1 != argc)
                return vb_cli_fail(VB_E_USAGE, "pool gc needs PATH (see --help)");
        code = open_pool(argv[optind], &p);
        if (code)
                return code;
        r = sp_pool_gc(p, &o, &res);
        if (r == -EBUSY)
                return vb_cli_fail(VB_E_BUSY, "another gc is running on this pool");
        if (r == -EBADMSG)
                return vb_cli_fail(VB_E_CORRUPT, "a manifest or index is damaged; gc removes nothing until "
                                                 "`vbak pool verify` is clean");
        if (r < 0)
                return fail_errno(r, "gc");
        if (vb_cli_json)
                return vb_cli_print_json(
                        json_pack("{s:b, s:I, s:I, s:I, s:I, s:I, s:I}", "dry_run", o.dry_run, "chunks_marked",
                                  (json_int_t)res.chunks_marked, "chunks_kept", (json_int_t)res.chunks_kept,
                                  "chunks_removed", (json_int_t)res.chunks_removed, "bytes_removed",
                                  (json_int_t)res.bytes_removed, "partial_removed", (json_int_t)res.partial_removed,
                                  "tmp_removed", (json_int_t)res.tmp_removed));
        char b[32];
        printf("%s %" PRIu64 " chunks (%s), %" PRIu64 " unfinished restore points, %" PRIu64
               " temp files; kept %" PRIu64 " chunks\n",
               o.dry_run ? "Would remove" : "Removed", res.chunks_removed,
               vb_format_size(res.bytes_removed, b, sizeof(b)), res.partial_removed, res.tmp_removed, res.chunks_kept);
        return 0;
}

/* --- prune -------------------------------------------------------------- */

static const char prune_help[] = "Usage: vbak pool prune PATH --vm NAME [--keep-last N] [--keep-daily N]\n"
                                 "                       [--keep-weekly N] [--keep-monthly N] [--dry-run] [--json]\n"
                                 "Deletes the VM's restore points that no rule keeps. An incremental chain is\n"
                                 "never broken: a kept restore point keeps its parents. Run gc afterwards to\n"
                                 "free the space.\n";

static int parse_count(const char *s, unsigned *ret)
{
        char *end;
        long v = strtol(s, &end, 10);

        if (*end || v < 0 || v > 100000)
                return -EINVAL;
        *ret = (unsigned)v;
        return 0;
}

static int cmd_prune(int argc, char **argv)
{
        static const struct option opts[] = {
                { "vm", required_argument, NULL, 'v' },
                { "keep-last", required_argument, NULL, 'l' },
                { "keep-daily", required_argument, NULL, 'd' },
                { "keep-weekly", required_argument, NULL, 'w' },
                { "keep-monthly", required_argument, NULL, 'm' },
                { "dry-run", no_argument, NULL, 'n' },
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        _cleanup_(sp_pool_closep) sp_pool *p = NULL;
        _cleanup_free_ sp_fs_writer_info *writers = NULL;
        _cleanup_free_ const char **protect = NULL;
        _cleanup_free_ bool *keep = NULL;
        const char *vm = NULL;
        sp_keep k = { 0 };
        bool dry_run = false;
        dd_manifest **v = NULL;
        size_t n = 0, n_writers = 0, n_protect = 0, removed = 0;
        json_t *jk = NULL, *jr = NULL;
        int c, r, code = 0;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                unsigned *slot = c == 'l' ? &k.last : c == 'd' ? &k.daily : c == 'w' ? &k.weekly : &k.monthly;
                switch (c) {
                case 'v':
                        vm = optarg;
                        break;
                case 'l':
                case 'd':
                case 'w':
                case 'm':
                        if (parse_count(optarg, slot) < 0)
                                return vb_cli_fail(VB_E_USAGE, "bad count '%s'", optarg);
                        break;
                case 'n':
                        dry_run = true;
                        break;
                case 'j':
                        vb_cli_json = true;
                        break;
                case 'h':
                        fputs(prune_help, stdout);
                        return 0;
                default:
                        return VB_E_USAGE;
                }
        }
        if (optind + 1 != argc || !vm)
                return vb_cli_fail(VB_E_USAGE, "pool prune needs PATH and --vm (see --help)");
        if (!sp_keep_any(&k))
                return vb_cli_fail(VB_E_USAGE, "give at least one --keep-* rule; prune never deletes everything");
        code = open_pool(argv[optind], &p);
        if (code)
                return code;
        r = sp_pool_list(p, vm, warn_problem, NULL, &v, &n);
        if (r < 0)
                return fail_errno(r, "cannot list the pool");
        /* Parents of backups running now stay, whatever the rules say. */
        r = sp_fs_active_writers(p, &writers, &n_writers);
        protect = calloc(MAX(n_writers, 1), sizeof(*protect));
        keep = calloc(MAX(n, 1), sizeof(*keep));
        if (r < 0 || !protect || !keep) {
                code = vb_cli_fail(VB_E_FAILED, "cannot list running backups");
                goto out;
        }
        for (size_t i = 0; i < n_writers; i++)
                if (writers[i].parent[0])
                        protect[n_protect++] = writers[i].parent;
        r = sp_retention_select(v, n, &k, protect, n_protect, keep);
        if (r < 0) {
                code = fail_errno(r, "prune");
                goto out;
        }
        jk = json_array();
        jr = json_array();
        for (size_t i = 0; i < n; i++) {
                if (keep[i]) {
                        json_array_append_new(jk, json_string(v[i]->id));
                        if (!vb_cli_json)
                                printf("keep    %s %s\n", v[i]->id, dd_backup_type_to_string(v[i]->type));
                        continue;
                }
                if (!dry_run) {
                        r = sp_pool_remove(p, v[i]);
                        if (r < 0) {
                                code = fail_errno(r, v[i]->id);
                                goto out;
                        }
                }
                removed++;
                json_array_append_new(jr, json_string(v[i]->id));
                if (!vb_cli_json)
                        printf("%s  %s %s\n", dry_run ? "would remove" : "remove", v[i]->id,
                               dd_backup_type_to_string(v[i]->type));
        }
        if (vb_cli_json) {
                code = vb_cli_print_json(json_pack("{s:b, s:O, s:O}", "dry_run", dry_run, "kept", jk, "removed", jr));
        }
out:
        json_decref(jk);
        json_decref(jr);
        sp_manifests_free(v, n);
        return code;
}

/* --- stats -------------------------------------------------------------- */

static const char stats_help[] = "Usage: vbak pool stats PATH [--json]\n"
                                 "Shows the pool's sizes and its dedup and compression ratios.\n";

static int cmd_stats(int argc, char **argv)
{
        static const struct option opts[] = {
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        _cleanup_(sp_pool_closep) sp_pool *p = NULL;
        sp_stats s;
        int c, r, code;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (c) {
                case 'j':
                        vb_cli_json = true;
                        break;
                case 'h':
                        fputs(stats_help, stdout);
                        return 0;
                default:
                        return VB_E_USAGE;
                }
        }
        if (optind + 1 != argc)
                return vb_cli_fail(VB_E_USAGE, "pool stats needs PATH (see --help)");
        code = open_pool(argv[optind], &p);
        if (code)
                return code;
        r = sp_pool_stats(p, &s);
        if (r < 0)
                return fail_errno(r, "stats");
        if (vb_cli_json)
                return vb_cli_print_json(
                        json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f}", "type", p->drv->name,
                                  "restore_points", (json_int_t)s.restore_points, "chunks", (json_int_t)s.chunks,
                                  "logical_bytes", (json_int_t)s.logical_bytes, "data_bytes", (json_int_t)s.data_bytes,
                                  "unique_bytes", (json_int_t)s.unique_bytes, "stored_bytes",
                                  (json_int_t)s.stored_bytes, "dedup_ratio", ratio(s.data_bytes, s.unique_bytes),
                                  "compression_ratio", ratio(s.unique_bytes, s.stored_bytes)));
        char a[32], b[32], d[32], e[32];
        printf("pool:              %s (%s)\n", p->path, p->drv->name);
        printf("restore points:    %" PRIu64 "\n", s.restore_points);
        printf("chunks:            %" PRIu64 "\n", s.chunks);
        printf("logical size:      %s\n", vb_format_size(s.logical_bytes, a, sizeof(a)));
        printf("data:              %s\n", vb_format_size(s.data_bytes, b, sizeof(b)));
        printf("unique data:       %s\n", vb_format_size(s.unique_bytes, d, sizeof(d)));
        printf("stored:            %s\n", vb_format_size(s.stored_bytes, e, sizeof(e)));
        printf("dedup ratio:       %.2f\n", ratio(s.data_bytes, s.unique_bytes));
        printf("compression ratio: %.2f\n", ratio(s.unique_bytes, s.stored_bytes));
        return 0;
}

/* --- copy --------------------------------------------------------------- */

static const char copy_help[] = "Usage: vbak pool copy FROM-PATH TO-PATH [ID...|--all] [--vm NAME] [--json]\n"
                                "Copies restore points of the pool at FROM-PATH into the pool at TO-PATH, of any\n"
                                "two types (a dedup pool to a tape pool and back, ...), each as a full restore\n"
                                "point with a new id. Every chunk is checked against its digest as it is read.\n"
                                "An ID may be 'latest' (of --vm NAME, else of the pool).\n\n"
                                "  --all        every restore point of FROM-PATH, oldest first (of --vm NAME only)\n"
                                "  --vm NAME    the VM the restore points belong to\n"
                                "  --json       print the copies as JSON\n";

static int copy_failed(int r, sp_pool *from, sp_pool *to, const dd_manifest *m)
{
        const char *why = sp_tape_error(to) ? sp_tape_error(to) : sp_tape_error(from);

        if (r == -EXDEV)
                return vb_cli_fail(VB_E_USAGE,
                                   "restore point %s: the pools' chunk sizes differ (%" PRIu32 " and %" PRIu32
                                   " bytes): a copy keeps the chunks as they are",
                                   m->id, from->opts.chunk_size, to->opts.chunk_size);
        if (r == -EOPNOTSUPP)
                return vb_cli_fail(VB_E_USAGE, "restore point %s: %s", m->id,
                                   why ? why : "the target pool cannot hold it");
        if (r == -ENODATA || r == -EBADMSG)
                return vb_cli_fail(vb_error_from_errno(r), "restore point %s: %s; nothing was committed", m->id,
                                   why             ? why
                                   : r == -ENODATA ? "a chunk is missing"
                                                   : "stored data is damaged");
        return vb_cli_fail(vb_error_from_errno(r), "copy of restore point %s failed, nothing was committed: %s", m->id,
                           why ? why : strerror(-r));
}

static int cmd_copy(int argc, char **argv)
{
        static const struct option opts[] = {
                { "all", no_argument, NULL, 'a' },
                { "vm", required_argument, NULL, 'v' },
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        _cleanup_(sp_pool_closep) sp_pool *from = NULL, *to = NULL;
        const char *vm = NULL;
        dd_manifest **v = NULL;
        size_t n = 0;
        bool all = false;
        json_t *out = NULL;
        int c, r, code = 0;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (c) {
                case 'a':
                        all = true;
                        break;
                case 'v':
                        vm = optarg;
                        break;
                case 'j':
                        vb_cli_json = true;
                        break;
                case 'h':
                        fputs(copy_help, stdout);
                        return 0;
                default:
                        return VB_E_USAGE;
                }
        }
        if (argc - optind < 2 || (all == (argc - optind > 2)))
                return vb_cli_fail(VB_E_USAGE, "pool copy needs FROM-PATH, TO-PATH and IDs or --all (see --help)");
        code = open_pool(argv[optind], &from);
        if (!code)
                code = open_pool(argv[optind + 1], &to);
        if (code)
                return code;
        if (streq(from->uuid, to->uuid))
                return vb_cli_fail(VB_E_USAGE, "%s and %s are the same pool", argv[optind], argv[optind + 1]);
        if (all) {
                r = sp_pool_list(from, vm, warn_problem, NULL, &v, &n);
                if (r < 0)
                        return fail_errno(r, "cannot list the pool");
        } else {
                v = calloc(argc - optind - 2, sizeof(*v));
                if (!v)
                        return vb_cli_fail(VB_E_FAILED, "out of memory");
                for (int i = optind + 2; i < argc; i++) {
                        r = sp_pool_find(from, argv[i], vm, &v[n]);
                        if (r == -ENOENT) {
                                code = vb_cli_fail(VB_E_NOT_FOUND, "restore point '%s' not found in %s", argv[i],
                                                   argv[optind]);
                                goto out;
                        }
                        if (r < 0) {
                                code = fail_errno(r, argv[i]);
                                goto out;
                        }
                        n++;
                        if (vm && !streq_ptr(v[n - 1]->vm.name, vm)) {
                                code = vb_cli_fail(VB_E_NOT_FOUND, "restore point %s belongs to VM %s, not %s",
                                                   v[n - 1]->id, v[n - 1]->vm.name, vm);
                                goto out;
                        }
                }
        }
        out = json_array();
        if (!out) {
                code = vb_cli_fail(VB_E_FAILED, "out of memory");
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                _cleanup_(dd_manifest_freep) dd_manifest *done = NULL;
                vb_progress prog;
                char where[128], size[32];
                uint64_t total = 0;
                json_t *j;

                vb_progress_init(&prog, "copy", false);
                r = sp_copy(from, v[i], to, vb_progress_update, &prog, &done);
                vb_progress_done(&prog);
                if (r < 0) {
                        code = copy_failed(r, from, to, v[i]);
                        goto out;
                }
                for (size_t k = 0; k < done->n_disks; k++)
                        total += done->disks[k].size;
                j = json_pack("{s:s, s:s, s:s, s:I}", "from", v[i]->id, "id", done->id, "vm", done->vm.name, "size",
                              (json_int_t)total);
                tape_where(to, done->id, where, sizeof(where), j);
                if (!j || json_array_append_new(out, j) < 0) {
                        code = vb_cli_fail(VB_E_FAILED, "out of memory");
                        goto out;
                }
                if (!vb_cli_json)
                        printf("Copied %s of %s -> %s (%s)%s%s\n", v[i]->id, done->vm.name, done->id,
                               vb_format_size(total, size, sizeof(size)), where[0] ? ", " : "", where);
        }
        if (vb_cli_json)
                code = vb_cli_print_json(TAKE_PTR(out));
        else if (n == 0)
                printf("Nothing to copy\n");
out:
        json_decref(out);
        sp_manifests_free(v, n);
        return code;
}

/* --- dispatch ----------------------------------------------------------- */

static const struct {
        const char *name;
        int (*fn)(int argc, char **argv);
        const char *summary;
} verbs[] = {
        { "init", cmd_init, "create a pool" },
        { "backup", cmd_backup, "back up a disk image (full or incremental)" },
        { "restore", cmd_restore, "restore a disk of a restore point to a file" },
        { "list", cmd_list, "list restore points" },
        { "verify", cmd_verify, "check stored data against its digests" },
        { "gc", cmd_gc, "remove unreferenced chunks and leftovers" },
        { "prune", cmd_prune, "delete restore points by keep rules" },
        { "stats", cmd_stats, "show sizes and ratios" },
        { "copy", cmd_copy, "copy restore points into another pool (e.g. to tape)" },
};

void vb_cli_pool_help(FILE *f)
{
        fputs("Usage: vbak pool VERB PATH [OPTIONS]   (vbak pool VERB --help for each)\n", f);
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                fprintf(f, "  %-8s %s\n", verbs[i].name, verbs[i].summary);
        fputs("\nThe pools vbakd writes into, through the daemon (vbak pool add --help):\n"
              "  add NAME --path PATH [--type dedup|standard]   register (or create) a pool\n"
              "  list               the registered pools (with PATH: the restore points above)\n"
              "  show NAME          one pool and its sizes\n"
              "  remove NAME        unregister a pool (its data stays)\n"
              "  rescan NAME        read its restore points into vbakd's catalog again\n",
              f);
}

int vb_cli_pool(int argc, char **argv)
{
        if (argc < 2 || streq(argv[1], "--help") || streq(argv[1], "-h")) {
                vb_cli_pool_help(argc < 2 ? stderr : stdout);
                return argc < 2 ? VB_E_USAGE : 0;
        }
        /* add, show, remove, rescan, and list without a PATH: vbakd's pools. */
        if (vb_cli_daemon_pool_wants(argc, argv))
                return vb_cli_daemon_pool(argc, argv);
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(argv[1], verbs[i].name)) {
                        optind = 1;
                        return verbs[i].fn(argc - 1, argv + 1);
                }
        return vb_cli_fail(VB_E_USAGE, "unknown verb 'pool %s' (see vbak pool --help)", argv[1]);
}
