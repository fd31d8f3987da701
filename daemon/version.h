/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* version.h -- vbak's version, shared by vbak, vbakd and vbak-cvd. */
#ifndef VB_VERSION_H
#define VB_VERSION_H

#define VB_VERSION "0.1.0"

#endif
