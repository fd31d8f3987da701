/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tapedev.h -- a tape device as the tape pool sees it: fixed-size records,
 * filemarks, rewind, space forward over filemarks, end of data, and labelled
 * volumes. Two backends:
 *
 *   - a Linux SCSI tape drive through st(4): its non-rewinding node
 *     (/dev/nstN), variable block mode, one write(2) per record, MTIOCTOP
 *     for positioning and MTIOCGET for the status;
 *   - a file-backed stand-in: a folder with one file per volume
 *     (LABEL.vtape) holding the records and filemarks as a stream of items
 *     (below), with a capacity past which a write fails like the end of a
 *     tape.
 *
 * Tape semantics, in both: a write (of a record or a filemark) ends the data
 * at that point; whatever followed on the volume is gone. File n of a volume
 * starts after its n-th filemark; file 0 is the label.
 *
 * The stand-in's volume file is a sequence of items, each with an 8-byte
 * header (integers little endian):
 *
 *   offset size  field
 *        0    4  kind: "VTRC" a record, "VTFM" a filemark
 *        4    4  length of the record's bytes that follow (0 for a filemark)
 *
 * The label record (the only record of file 0), padded with zeros to a
 * record:
 *
 *   offset size  field
 *        0    8  magic "VBAKTAPE"
 *        8    4  version (1)
 *       12   64  the volume's label, NUL-padded
 *       76   37  the pool's uuid, NUL-terminated
 */
#ifndef SP_TAPEDEV_H
#define SP_TAPEDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SP_TAPE_RECORD_SIZE (256u << 10) /* every record is this size; the last of a file is padded */
#define SP_TAPE_LABEL_MAX 32
#define SP_TAPE_LABEL_MAGIC "VBAKTAPE"
#define SP_TAPE_LABEL_VERSION 1
#define SP_TAPE_VOLUME_SUFFIX ".vtape"

typedef struct sp_tapedev sp_tapedev;

/* True when device names a tape drive (a path under /dev/ or a character
 * device) rather than a folder of file-backed volumes. */
bool sp_tapedev_is_drive(const char *device);

/* Volume labels: 1-32 of [A-Za-z0-9._-], not starting with '.' or '-'. */
bool sp_tape_label_is_valid(const char *label);

/* Opens the drive, or the folder of file-backed volumes (created when
 * missing), whose volumes hold volume_size bytes at most (0: no limit but
 * the file system's). do_sync: filemarks make the stand-in's data durable. */
int sp_tapedev_open(const char *device, uint64_t volume_size, bool do_sync, sp_tapedev **ret);
sp_tapedev *sp_tapedev_close(sp_tapedev *t);
static inline void sp_tapedev_closep(sp_tapedev **t)
{
        sp_tapedev_close(*t);
}

/* The last error in words ("insert volume L2 into /dev/nst0"); "" when none. */
const char *sp_tapedev_error(const sp_tapedev *t);

/* Makes volume label (of the pool uuid) the one in use, rewound. The
 * stand-in opens LABEL.vtape; the drive reads the label of the tape it
 * holds. With blank_ok a volume without a label (new, or in the stand-in
 * missing) is accepted: *ret_blank is then true and the caller writes the
 * label (sp_tapedev_write_label). -EMEDIUMTYPE when another volume is
 * loaded or the volume belongs to another pool, -ENOMEDIUM when the drive
 * is empty, -ENOENT when a stand-in volume is missing. */
int sp_tapedev_load(sp_tapedev *t, const char *label, const char *uuid, bool blank_ok, bool *ret_blank);

/* Rewinds and writes the label record and a filemark: the volume then holds
 * file 0 only. */
int sp_tapedev_write_label(sp_tapedev *t, const char *label, const char *uuid);

int sp_tapedev_rewind(sp_tapedev *t);
/* Spaces forward over n filemarks: to the start of file n from the start of
 * the volume. -ENODATA when the data ends first. */
int sp_tapedev_space_files(sp_tapedev *t, unsigned n);
/* Moves to the end of the recorded data. */
int sp_tapedev_end_of_data(sp_tapedev *t);

/* Writes one record of len bytes (at most SP_TAPE_RECORD_SIZE): -ENOSPC at
 * the end of the medium (the record may or may not be on the volume; the
 * caller abandons the file). */
int sp_tapedev_write(sp_tapedev *t, const void *buf, size_t len);
/* Writes a filemark (and with do_sync makes the stand-in's data durable). */
int sp_tapedev_write_filemark(sp_tapedev *t);
/* Reads the next record into buf: its length, 0 at a filemark (which is then
 * passed), -ENODATA at the end of the recorded data, -ENOMEM when the record
 * is larger than size. */
ssize_t sp_tapedev_read(sp_tapedev *t, void *buf, size_t size);

#endif
