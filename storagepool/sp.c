/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sp.c -- the pool driver registry and the wrappers callers use.
 */
#include "storagepool/sp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon/util.h"
#include "dedup/index.h"
#include "storagepool/fs.h"

static const sp_driver *const sp_drivers[] = {
        &sp_driver_dedup,
        &sp_driver_standard,
        &sp_driver_object,
        &sp_driver_tape,
};

static const char *const fsync_table[_SP_FSYNC_MAX] = {
        [SP_FSYNC_ALWAYS] = "always",
        [SP_FSYNC_NONE] = "none",
};

const char *sp_fsync_to_string(sp_fsync f)
{
        if (f < 0 || f >= _SP_FSYNC_MAX)
                return NULL;
        return fsync_table[f];
}

sp_fsync sp_fsync_from_string(const char *s)
{
        for (int i = 0; s && i < _SP_FSYNC_MAX; i++)
                if (streq(s, fsync_table[i]))
                        return (sp_fsync)i;
        return _SP_FSYNC_INVALID;
}

const sp_driver *sp_driver_find(const char *name)
{
        for (size_t i = 0; name && i < ELEMENTSOF(sp_drivers); i++)
                if (streq(sp_drivers[i]->name, name))
                        return sp_drivers[i];
        return NULL;
}

int sp_manifest_add_index_disk(sp_disk_writer *dw, const char *disk, const dd_digest *index_checksum,
                               uint64_t bytes_new, uint64_t bytes_data)
{
        dd_manifest_disk *md;
        int r = dd_manifest_add_disk(dw->w->m, disk, &md);

        if (r < 0)
                return r;
        md->size = dw->size;
        md->chunk_size = dw->chunk_size;
        md->index_checksum = *index_checksum;
        md->bytes_read = dw->bytes_read;
        md->bytes_new = bytes_new;
        md->bytes_data = bytes_data;
        if (asprintf(&md->index, "%s" DD_INDEX_SUFFIX, disk) < 0) {
                md->index = NULL;
                return -ENOMEM;
        }
        return 0;
}

uint8_t *sp_chunk_aux(sp_chunk *c)
{
        if (!c->aux) {
                c->aux = malloc(c->aux_size);
        }
        return c->aux;
}

int sp_pool_create(const char *path, const sp_options *o)
{
        const sp_driver *drv;

        if (!path || !o)
                return -EINVAL;
        drv = sp_driver_find(o->type);
        if (!drv)
                return -EPROTONOSUPPORT;
        if (o->chunk_size < SP_CHUNK_SIZE_MIN || o->chunk_size > SP_CHUNK_SIZE_MAX ||
            (o->chunk_size & (o->chunk_size - 1)) != 0 || o->compression < 0 ||
            o->compression > DD_COMPRESSION_LEVEL_MAX || !sp_fsync_to_string(o->fsync))
                return -EINVAL;
        return drv->create(path, o);
}

int sp_pool_open(const char *path, sp_pool **ret)
{
        sp_pool base;
        int r;

        if (!path || !ret)
                return -EINVAL;
        r = sp_fs_read_pool(path, &base);
        if (r < 0)
                return r;
        r = base.drv->open(&base, ret);
        if (r < 0)
                sp_fs_pool_done(&base);
        return r;
}

sp_pool *sp_pool_close(sp_pool *p)
{
        if (p)
                p->drv->close(p);
        return NULL;
}

void sp_manifests_free(dd_manifest **v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                dd_manifest_free(v[i]);
        free(v);
}

int sp_pool_list(sp_pool *p, const char *vm, sp_problem_fn problem, void *userdata, dd_manifest ***ret, size_t *ret_n)
{
        if (!p || !ret || !ret_n)
                return -EINVAL;
        return p->drv->list(p, vm, problem, userdata, ret, ret_n);
}

int sp_pool_find(sp_pool *p, const char *id, const char *vm, dd_manifest **ret)
{
        dd_manifest **v = NULL, *found = NULL;
        size_t n = 0;
        int r;

        if (!p || !id || !ret)
                return -EINVAL;
        r = sp_pool_list(p, streq(id, "latest") ? vm : NULL, NULL, NULL, &v, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if (streq(id, "latest") || streq(v[i]->id, id))
                        found = v[i]; /* the list is oldest first: the last match is the newest */
        if (found) {
                for (size_t i = 0; i < n; i++)
                        if (v[i] == found)
                                v[i] = NULL;
        }
        sp_manifests_free(v, n);
        if (!found)
                return -ENOENT;
        *ret = found;
        return 0;
}

int sp_pool_verify(sp_pool *p, const sp_verify_opts *o, sp_verify_result *ret)
{
        if (!p || !o || !ret)
                return -EINVAL;
        if (!p->drv->verify)
                return -EOPNOTSUPP;
        return p->drv->verify(p, o, ret);
}

int sp_pool_gc(sp_pool *p, const sp_gc_opts *o, sp_gc_result *ret)
{
        if (!p || !o || !ret)
                return -EINVAL;
        if (!p->drv->gc)
                return -EOPNOTSUPP;
        return p->drv->gc(p, o, ret);
}

int sp_pool_remove(sp_pool *p, const dd_manifest *m)
{
        if (!p || !m)
                return -EINVAL;
        return p->drv->remove(p, m);
}

int sp_pool_stats(sp_pool *p, sp_stats *ret)
{
        if (!p || !ret)
                return -EINVAL;
        if (!p->drv->stats)
                return -EOPNOTSUPP;
        return p->drv->stats(p, ret);
}
