/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * jobspec.h -- what a backup job selects: its selection items (a host pool,
 * cluster, host or VM, by name or by id) and its exclusion patterns,
 * checked and brought to the catalog's form, and the rules that match a VM
 * against them.
 *
 * DESIGN
 * Everything here is pure (no I/O, no catalog): the API checks what a
 * client sends with it, the command line formats what the daemon answers,
 * and vb_jobspec_excluded() is the exclusion rule for whoever resolves a
 * job's VMs.
 *
 * A selection item is written "LEVEL:NAME" on the command line
 * (host:cvk01, vm:db01; the name is everything after the first ':', so it
 * may hold ':' itself) or, in JSON, {"level": LEVEL, "name": NAME} or
 * {"level": LEVEL, "id": ID} (both may be given). The catalog's form is
 * always the object. An item with an id designates that object whatever its
 * name becomes; one with only a name follows the name (for a VM, its name
 * or its title).
 *
 * An exclusion is an fnmatch(3) pattern (*, ?, [...], no flags), at most
 * VB_JOBSPEC_PATTERN_MAX bytes: a VM is skipped when its name or its title
 * matches one.
 */
#ifndef VB_JOBSPEC_H
#define VB_JOBSPEC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* The longest name, id or exclusion pattern, in bytes. */
#define VB_JOBSPEC_NAME_MAX 256
#define VB_JOBSPEC_PATTERN_MAX 256
/* The most items of a selection and patterns of an exclusion list. */
#define VB_JOBSPEC_ITEMS_MAX 1024

typedef enum vb_select_level {
        VB_SELECT_HOSTPOOL,
        VB_SELECT_CLUSTER,
        VB_SELECT_HOST,
        VB_SELECT_VM,
        _VB_SELECT_LEVEL_MAX,
        _VB_SELECT_LEVEL_INVALID = -1,
} vb_select_level;

const char *vb_select_level_to_string(vb_select_level l);
/* Case-insensitive: "HostPool" is hostpool. */
vb_select_level vb_select_level_from_string(const char *s);

/* Parses "LEVEL:NAME" into a new {"level", "name"} object. Returns 0,
 * -EINVAL (with *err, when err is not NULL, a message to free), -ENOMEM. */
int vb_jobspec_item_parse(const char *text, json_t **ret, char **err);

/* Checks a selection as the API takes it: a non-empty array of "LEVEL:NAME"
 * strings and {level, name} / {level, id} objects (id: a string or an
 * integer), no item twice. *ret gets a new array in the catalog's form
 * (objects with a lower-case level). Returns 0, -EINVAL with *err, -ENOMEM. */
int vb_jobspec_selection_from_json(const json_t *sel, json_t **ret, char **err);

/* Checks an exclusion list: an array of patterns (non-empty, at most
 * VB_JOBSPEC_PATTERN_MAX bytes, no control characters, accepted by
 * fnmatch). NULL or null is the empty list. *ret gets a new array. Returns
 * 0, -EINVAL with *err, -ENOMEM. */
int vb_jobspec_exclusions_from_json(const json_t *excl, json_t **ret, char **err);

/* A catalog item as text: "host:cvk01", "vm id 102", "vm:db01 (id 102)".
 * Returns the length, -EINVAL for an item that is not one, -ENOBUFS. */
int vb_jobspec_item_format(const json_t *item, char *buf, size_t size);

/* The first pattern of exclusions (an array of strings; NULL: none) that a
 * VM with this name or title (either may be NULL) matches, or NULL: the VM
 * is not excluded. */
const char *vb_jobspec_excluded(const json_t *exclusions, const char *name, const char *title);

#endif
