/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cas.h -- the H3C CAS driver: the hypervisor interface (daemon/hypervisor.h)
 * on one CVM's REST API (cas-api.md), through cas/http.h and cas/doc.h.
 *
 * DESIGN
 * - cas_driver implements every operation of the interface: connect,
 *   inventory, vm_get, storage_free, cbt_check (capabilities and
 *   checkCbtBackup), snapshots (adaptive = external; quiesce through the
 *   guest agent, crash-consistent when it does not answer), disk_source and
 *   disk_target (cvd:// URLs to the disk service of the VM's host, on the
 *   preferred network), power, and the restore side (vm/add, storage/volume,
 *   addDevice, vm/delete). docs/cas.md tells the whole backup.
 * - Inventories and VMs handed to callbacks belong to the driver and live
 *   only during the callback: a caller copies what it keeps.
 * - Every message names the CVM, the VM (name and id) when there is one, and
 *   the step: "CVM 10.0.0.1:8080: vm web01 (id 12): start: task failed: ...".
 */
#ifndef VB_CAS_H
#define VB_CAS_H

#include <stdint.h>

#include "daemon/hypervisor.h"

/* How long a task (message/{msgId}) may run before the driver gives up. */
#define CAS_TASK_TIMEOUT_MS_DEFAULT (10u * 60u * 1000u)
/* Requests in flight at once while reading the per-VM views of an inventory. */
#define CAS_INVENTORY_PARALLEL 8
/* The hosts' disk service (cas-api.md §4, docs/cvd-protocol.md). */
#define CAS_CVD_PORT_DEFAULT 8192
/* vm/vmList page size (cas-api.md §1.4). */
#define CAS_VMLIST_LIMIT 100

extern const vb_hv_driver cas_driver;

/* Sets the task timeout of a connected CAS platform (0: the default). */
void cas_set_task_timeout(vb_hv *hv, uint64_t ms);

#endif
