/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vbak-cvd.c -- placeholder main until the disk service lands. */
#include <stdio.h>

int main(void)
{
        fputs("vbak-cvd: not built yet\n", stderr);
        return 1;
}
