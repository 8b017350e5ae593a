#ifndef BERTH_CNFTABLES_SHIM_H
#define BERTH_CNFTABLES_SHIM_H
#include <stdbool.h>
#include <stdint.h>
#include <nftables/libnftables.h>
#endif
