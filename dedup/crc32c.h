/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * crc32c.h -- CRC-32C (Castagnoli), the checksum of stored chunk bytes.
 */
#ifndef DD_CRC32C_H
#define DD_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continues crc over buf; start with crc = 0. Uses the SSE4.2 instruction
 * when the CPU has it, a slicing table otherwise; both give the same result. */
uint32_t dd_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
