/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * object.h -- the object pool (storagepool/object.c): a dedup pool whose
 * chunks, indexes and manifests are objects in an S3-compatible bucket.
 * The driver itself is sp_driver_object (storagepool/sp.h).
 */
#ifndef SP_OBJECT_H
#define SP_OBJECT_H

/* Where an object pool's secret key comes from when its object.json names
 * no file: vbakd answers from its credential store. 0 with *ret (caller
 * frees), or -errno (-ENOKEY: none). */
typedef int (*sp_object_secret_fn)(void *userdata, const char *pool_path, char **ret);
void sp_object_set_secret_fn(sp_object_secret_fn fn, void *userdata);

#endif
