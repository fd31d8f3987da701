/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * manifest.c -- restore point manifests to and from JSON.
 */
#include "dedup/manifest.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/util.h"

static const char *const backup_type_table[_DD_BACKUP_TYPE_MAX] = {
        [DD_BACKUP_FULL] = "full",
        [DD_BACKUP_INCREMENTAL] = "incremental",
};

const char *dd_backup_type_to_string(dd_backup_type t)
{
        if (t < 0 || t >= _DD_BACKUP_TYPE_MAX)
                return NULL;
        return backup_type_table[t];
}

dd_backup_type dd_backup_type_from_string(const char *s)
{
        for (int i = 0; s && i < _DD_BACKUP_TYPE_MAX; i++)
                if (streq(s, backup_type_table[i]))
                        return (dd_backup_type)i;
        return _DD_BACKUP_TYPE_INVALID;
}

bool dd_name_is_safe(const char *s)
{
        size_t n;

        if (!s || s[0] == '.' || s[0] == '-')
                return false;
        n = strlen(s);
        if (n == 0 || n > 64)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                      c == '_' || c == '-'))
                        return false;
        }
        return true;
}

bool dd_disk_name_is_safe(const char *s)
{
        return dd_name_is_safe(s) && strlen(s) <= DD_DISK_NAME_MAX;
}

dd_manifest *dd_manifest_new(void)
{
        return calloc(1, sizeof(dd_manifest));
}

static void disk_done(dd_manifest_disk *d)
{
        free(d->name);
        free(d->device);
        free(d->format);
        free(d->index);
}

dd_manifest *dd_manifest_free(dd_manifest *m)
{
        if (!m)
                return NULL;
        free(m->id);
        free(m->parent);
        free(m->pool_type);
        free(m->vm.platform);
        free(m->vm.id);
        free(m->vm.uuid);
        free(m->vm.name);
        free(m->vm.title);
        free(m->vm.host_id);
        json_decref(m->config);
        free(m->consistency);
        free(m->checkpoint);
        free(m->job);
        free(m->run);
        for (size_t i = 0; i < m->n_disks; i++)
                disk_done(&m->disks[i]);
        free(m->disks);
        free(m);
        return NULL;
}

int dd_manifest_add_disk(dd_manifest *m, const char *name, dd_manifest_disk **ret)
{
        dd_manifest_disk *d;

        if (!m || !dd_name_is_safe(name))
                return -EINVAL;
        if (dd_manifest_find_disk(m, name))
                return -EEXIST;
        d = realloc(m->disks, (m->n_disks + 1) * sizeof(*d));
        if (!d)
                return -ENOMEM;
        m->disks = d;
        d = &m->disks[m->n_disks];
        memset(d, 0, sizeof(*d));
        d->name = strdup(name);
        if (!d->name)
                return -ENOMEM;
        m->n_disks++;
        if (ret)
                *ret = d;
        return 0;
}

const dd_manifest_disk *dd_manifest_find_disk(const dd_manifest *m, const char *name)
{
        for (size_t i = 0; m && name && i < m->n_disks; i++)
                if (streq(m->disks[i].name, name))
                        return &m->disks[i];
        return NULL;
}

static int dup_str(const char *s, char **ret)
{
        if (!s) {
                *ret = NULL;
                return 0;
        }
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

int dd_manifest_copy(const dd_manifest *m, dd_manifest **ret)
{
        _cleanup_(dd_manifest_freep) dd_manifest *c = dd_manifest_new();
        int r = 0;

        if (!m || !ret)
                return -EINVAL;
        if (!c)
                return -ENOMEM;
        c->type = m->type;
        c->time_start = m->time_start;
        c->time_end = m->time_end;
        c->config = m->config ? json_deep_copy(m->config) : NULL;
        if (m->config && !c->config)
                return -ENOMEM;
        if ((r = dup_str(m->id, &c->id)) < 0 || (r = dup_str(m->parent, &c->parent)) < 0 ||
            (r = dup_str(m->pool_type, &c->pool_type)) < 0 || (r = dup_str(m->vm.platform, &c->vm.platform)) < 0 ||
            (r = dup_str(m->vm.id, &c->vm.id)) < 0 || (r = dup_str(m->vm.uuid, &c->vm.uuid)) < 0 ||
            (r = dup_str(m->vm.name, &c->vm.name)) < 0 || (r = dup_str(m->vm.title, &c->vm.title)) < 0 ||
            (r = dup_str(m->vm.host_id, &c->vm.host_id)) < 0 || (r = dup_str(m->consistency, &c->consistency)) < 0 ||
            (r = dup_str(m->checkpoint, &c->checkpoint)) < 0 || (r = dup_str(m->job, &c->job)) < 0 ||
            (r = dup_str(m->run, &c->run)) < 0)
                return r;
        for (size_t i = 0; i < m->n_disks; i++) {
                const dd_manifest_disk *s = &m->disks[i];
                dd_manifest_disk *d;

                r = dd_manifest_add_disk(c, s->name, &d);
                if (r < 0)
                        return r;
                d->size = s->size;
                d->chunk_size = s->chunk_size;
                d->index_checksum = s->index_checksum;
                d->bytes_read = s->bytes_read;
                d->bytes_new = s->bytes_new;
                d->bytes_data = s->bytes_data;
                if ((r = dup_str(s->device, &d->device)) < 0 || (r = dup_str(s->format, &d->format)) < 0 ||
                    (r = dup_str(s->index, &d->index)) < 0)
                        return r;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

static json_t *str_or_null(const char *s)
{
        return s ? json_string(s) : json_null();
}

int dd_manifest_format(const dd_manifest *m, char **ret)
{
        json_t *root, *vm, *disks;
        char *text;

        if (!m || !m->id || !dd_backup_type_to_string(m->type))
                return -EINVAL;
        disks = json_array();
        for (size_t i = 0; disks && i < m->n_disks; i++) {
                const dd_manifest_disk *d = &m->disks[i];
                char hex[DD_DIGEST_HEX_SIZE];

                json_array_append_new(disks,
                                      json_pack("{s:s, s:o, s:o, s:I, s:I, s:o, s:s, s:I, s:I, s:I}", "name", d->name,
                                                "device", str_or_null(d->device), "format", str_or_null(d->format),
                                                "size", (json_int_t)d->size, "chunk_size", (json_int_t)d->chunk_size,
                                                "index", str_or_null(d->index), "index_checksum",
                                                dd_digest_to_hex(&d->index_checksum, hex), "bytes_read",
                                                (json_int_t)d->bytes_read, "bytes_new", (json_int_t)d->bytes_new,
                                                "bytes_data", (json_int_t)d->bytes_data));
        }
        vm = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "platform", str_or_null(m->vm.platform), "id",
                       str_or_null(m->vm.id), "uuid", str_or_null(m->vm.uuid), "name", str_or_null(m->vm.name), "title",
                       str_or_null(m->vm.title), "host_id", str_or_null(m->vm.host_id));
        root = json_pack("{s:s, s:i, s:s, s:s, s:o, s:o, s:o, s:O, s:o, s:o, s:o, s:o, s:I, s:I, s:o}", "format",
                         DD_MANIFEST_FORMAT, "version", DD_MANIFEST_VERSION, "id", m->id, "type",
                         dd_backup_type_to_string(m->type), "parent", str_or_null(m->parent), "pool_type",
                         str_or_null(m->pool_type), "vm", vm ? vm : json_null(), "config",
                         m->config ? m->config : json_null(), "consistency", str_or_null(m->consistency), "checkpoint",
                         str_or_null(m->checkpoint), "job", str_or_null(m->job), "run", str_or_null(m->run),
                         "time_start", (json_int_t)m->time_start, "time_end", (json_int_t)m->time_end, "disks",
                         disks ? disks : json_null());
        if (!root || !vm || !disks || json_array_size(disks) != m->n_disks) {
                json_decref(root);
                return -ENOMEM;
        }
        text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        json_decref(root);
        if (!text)
                return -ENOMEM;
        *ret = text;
        return 0;
}

/* Reads an optional string member into *ret; -EBADMSG when it has another type. */
static int get_str(json_t *obj, const char *key, bool required, char **ret)
{
        json_t *v = json_object_get(obj, key);

        if (!v || json_is_null(v)) {
                *ret = NULL;
                return required ? -EBADMSG : 0;
        }
        if (!json_is_string(v))
                return -EBADMSG;
        return dup_str(json_string_value(v), ret);
}

static int get_u64(json_t *obj, const char *key, bool required, uint64_t *ret)
{
        json_t *v = json_object_get(obj, key);

        if (!v) {
                *ret = 0;
                return required ? -EBADMSG : 0;
        }
        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return -EBADMSG;
        *ret = (uint64_t)json_integer_value(v);
        return 0;
}

static int get_time(json_t *obj, const char *key, int64_t *ret)
{
        json_t *v = json_object_get(obj, key);

        *ret = 0;
        if (!v)
                return 0;
        if (!json_is_integer(v))
                return -EBADMSG;
        *ret = (int64_t)json_integer_value(v);
        return 0;
}

static int parse_disk(json_t *jd, dd_manifest *m)
{
        _cleanup_free_ char *name = NULL, *checksum = NULL;
        dd_manifest_disk *d;
        uint64_t chunk_size;
        int r;

        if (!json_is_object(jd))
                return -EBADMSG;
        r = get_str(jd, "name", true, &name);
        if (r < 0)
                return r;
        if (!dd_name_is_safe(name))
                return -EBADMSG;
        r = dd_manifest_add_disk(m, name, &d);
        if (r < 0)
                return r == -EEXIST || r == -EINVAL ? -EBADMSG : r;
        if ((r = get_str(jd, "device", false, &d->device)) < 0 || (r = get_str(jd, "format", false, &d->format)) < 0 ||
            (r = get_str(jd, "index", true, &d->index)) < 0 || (r = get_u64(jd, "size", true, &d->size)) < 0 ||
            (r = get_u64(jd, "chunk_size", true, &chunk_size)) < 0 ||
            (r = get_u64(jd, "bytes_read", false, &d->bytes_read)) < 0 ||
            (r = get_u64(jd, "bytes_new", false, &d->bytes_new)) < 0 ||
            (r = get_u64(jd, "bytes_data", false, &d->bytes_data)) < 0 ||
            (r = get_str(jd, "index_checksum", true, &checksum)) < 0)
                return r;
        if (!dd_name_is_safe(d->index) || chunk_size == 0 || chunk_size > UINT32_MAX)
                return -EBADMSG;
        d->chunk_size = (uint32_t)chunk_size;
        if (dd_digest_from_hex(checksum, &d->index_checksum) < 0)
                return -EBADMSG;
        return 0;
}

int dd_manifest_parse(const char *text, size_t len, dd_manifest **ret)
{
        _cleanup_(dd_manifest_freep) dd_manifest *m = NULL;
        _cleanup_free_ char *type = NULL;
        json_t *root, *vm, *disks, *config, *v;
        size_t i;
        int r;

        if (!text || !ret)
                return -EINVAL;
        root = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
        if (!root)
                return -EBADMSG;
        m = dd_manifest_new();
        if (!m) {
                r = -ENOMEM;
                goto out;
        }
        r = -EBADMSG;
        v = json_object_get(root, "format");
        if (!json_is_object(root) || !json_is_string(v) || !streq(json_string_value(v), DD_MANIFEST_FORMAT))
                goto out;
        v = json_object_get(root, "version");
        if (!json_is_integer(v))
                goto out;
        if (json_integer_value(v) != DD_MANIFEST_VERSION) {
                r = -EPROTONOSUPPORT;
                goto out;
        }
        if ((r = get_str(root, "id", true, &m->id)) < 0 || (r = get_str(root, "type", true, &type)) < 0 ||
            (r = get_str(root, "parent", false, &m->parent)) < 0 ||
            (r = get_str(root, "pool_type", false, &m->pool_type)) < 0 ||
            (r = get_str(root, "consistency", false, &m->consistency)) < 0 ||
            (r = get_str(root, "checkpoint", false, &m->checkpoint)) < 0 ||
            (r = get_str(root, "job", false, &m->job)) < 0 || (r = get_str(root, "run", false, &m->run)) < 0)
                goto out;
        r = -EBADMSG;
        m->type = dd_backup_type_from_string(type);
        if (m->type < 0 || !dd_name_is_safe(m->id) || (m->parent && !dd_name_is_safe(m->parent)))
                goto out;
        if (get_time(root, "time_start", &m->time_start) < 0 || get_time(root, "time_end", &m->time_end) < 0)
                goto out;
        vm = json_object_get(root, "vm");
        if (!json_is_object(vm))
                goto out;
        if ((r = get_str(vm, "platform", false, &m->vm.platform)) < 0 ||
            (r = get_str(vm, "id", false, &m->vm.id)) < 0 || (r = get_str(vm, "uuid", false, &m->vm.uuid)) < 0 ||
            (r = get_str(vm, "name", true, &m->vm.name)) < 0 || (r = get_str(vm, "title", false, &m->vm.title)) < 0 ||
            (r = get_str(vm, "host_id", false, &m->vm.host_id)) < 0)
                goto out;
        config = json_object_get(root, "config");
        if (config && !json_is_null(config))
                m->config = json_incref(config);
        r = -EBADMSG;
        disks = json_object_get(root, "disks");
        if (!json_is_array(disks))
                goto out;
        json_array_foreach(disks, i, v)
        {
                r = parse_disk(v, m);
                if (r < 0)
                        goto out;
        }
        *ret = TAKE_PTR(m);
        r = 0;
out:
        json_decref(root);
        return r;
}
