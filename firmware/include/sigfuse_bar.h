/* Generated from host/bar.py (sigfuse.bar.write_c_header); do not edit. */
#ifndef SIGFUSE_BAR_H
#define SIGFUSE_BAR_H

/* The PCIe BAR layout: a 4 KiB register window of 32-bit words (byte offsets below) and
 * two rings in host memory.  Ring indices are free-running 32-bit counters. */
#define SIGFUSE_BAR_MAGIC 0x42504653u  /* "SFPB" as a little-endian word */
#define SIGFUSE_BAR_VERSION 0x00010000u  /* major << 16 | minor */
#define SIGFUSE_BAR_SIZE 0x1000u
#define SIGFUSE_BAR_SIM_HOST_MEMORY_OFFSET 0x1000u  /* pcie-sim files: DMA address A is at this offset + A */

/* window words: byte offset, (writer) */
#define SIGFUSE_BAR_BAR_MAGIC 0x000u  /* (device) b"SFPB" as a little-endian word (all ones: the device is gone) */
#define SIGFUSE_BAR_BAR_VERSION 0x004u  /* (device) layout major << 16 | minor */
#define SIGFUSE_BAR_STATUS 0x008u  /* (device) STATUS_* bits */
#define SIGFUSE_BAR_CONTROL 0x00cu  /* (host) CONTROL_* bits; set ENABLE after configuring both rings */
#define SIGFUSE_BAR_HEARTBEAT 0x010u  /* (device) changes while the device runs (the model: every poll) */
#define SIGFUSE_BAR_MODEL_PID 0x014u  /* (device) pcie-sim only: process ID of the model (0 on hardware) */
#define SIGFUSE_BAR_CLOCKS_LO 0x018u  /* (device) datapath clocks so far, low word (the model: simulated clocks) */
#define SIGFUSE_BAR_CLOCKS_HI 0x01cu  /* (device) datapath clocks so far, high word */
#define SIGFUSE_BAR_REG_ADDR 0x020u  /* (host) mailbox: register address (sigfuse.regmap word index) */
#define SIGFUSE_BAR_REG_WDATA 0x024u  /* (host) mailbox: value to write */
#define SIGFUSE_BAR_REG_CTRL 0x028u  /* (host) mailbox: RegOp | REG_COMMIT | ticket << REG_TICKET_SHIFT; a write with a ticket other than reg_status's is a request */
#define SIGFUSE_BAR_REG_RDATA 0x02cu  /* (device) mailbox: value read (valid when reg_status shows the request's ticket) */
#define SIGFUSE_BAR_REG_STATUS 0x030u  /* (device) mailbox: RegStatus | ticket << REG_TICKET_SHIFT of the last request served */
#define SIGFUSE_BAR_SIG_BASE_LO 0x040u  /* (host) signal ring: DMA address, low word (RING_ALIGN-aligned) */
#define SIGFUSE_BAR_SIG_BASE_HI 0x044u  /* (host) signal ring: DMA address, high word */
#define SIGFUSE_BAR_SIG_ENTRIES 0x048u  /* (host) signal ring: entries, a power of two */
#define SIGFUSE_BAR_SIG_HEAD 0x04cu  /* (host) signal ring doorbell: entries written by the host (free-running) */
#define SIGFUSE_BAR_SIG_TAIL 0x050u  /* (device) signal ring: entries fetched by the device; their slots are free */
#define SIGFUSE_BAR_SIG_DONE 0x054u  /* (device) signal ring: entries whose results are all in the result ring (published after res_head) */
#define SIGFUSE_BAR_ENTRY_ERRORS 0x058u  /* (device) signal ring entries refused (bad op, reserved bits, pair slot) and skipped */
#define SIGFUSE_BAR_RES_BASE_LO 0x060u  /* (host) result ring: DMA address, low word (RING_ALIGN-aligned) */
#define SIGFUSE_BAR_RES_BASE_HI 0x064u  /* (host) result ring: DMA address, high word */
#define SIGFUSE_BAR_RES_ENTRIES 0x068u  /* (host) result ring: entries, a power of two */
#define SIGFUSE_BAR_RES_HEAD 0x06cu  /* (device) result ring: entries written by the device (free-running) */
#define SIGFUSE_BAR_RES_TAIL 0x070u  /* (host) result ring doorbell: entries consumed by the host; their slots are free */

#define SIGFUSE_BAR_STATUS_ENABLED 0x1u
#define SIGFUSE_BAR_STATUS_FAULT 0x2u
#define SIGFUSE_BAR_STATUS_RING_ERROR 0x4u
#define SIGFUSE_BAR_STATUS_ENTRY_ERROR 0x8u
#define SIGFUSE_BAR_STATUS_GONE 0x80000000u
#define SIGFUSE_BAR_CONTROL_ENABLE 0x1u

/* mailbox */
#define SIGFUSE_BAR_REG_OP_NONE 0u
#define SIGFUSE_BAR_REG_OP_READ 1u
#define SIGFUSE_BAR_REG_OP_WRITE 2u
#define SIGFUSE_BAR_REG_OP_MASK 0x3u
#define SIGFUSE_BAR_REG_COMMIT 0x4u
#define SIGFUSE_BAR_REG_TICKET_SHIFT 8u
#define SIGFUSE_BAR_REG_TICKET_MASK 0xffffffu
#define SIGFUSE_BAR_REG_STATUS_CODE_MASK 0xfu
#define SIGFUSE_BAR_REG_STATUS_OK 0u
#define SIGFUSE_BAR_REG_STATUS_BAD_ADDRESS 1u
#define SIGFUSE_BAR_REG_STATUS_READ_ONLY 2u
#define SIGFUSE_BAR_REG_STATUS_BAD_VALUE 3u
#define SIGFUSE_BAR_REG_STATUS_BAD_OP 4u

/* rings */
#define SIGFUSE_BAR_ENTRY_OP_SIGNAL 0u
#define SIGFUSE_BAR_ENTRY_OP_POP 1u
#define SIGFUSE_BAR_SIGNAL_ENTRY_BYTES 16u
#define SIGFUSE_BAR_RESULT_ENTRY_BYTES 32u
#define SIGFUSE_BAR_RING_ENTRIES_MIN 2u
#define SIGFUSE_BAR_RING_ENTRIES_MAX 65536u
#define SIGFUSE_BAR_RING_ALIGN 4096u

/* entry fields: bit offset (LSB first; bit 0 is bit 0 of the entry's first byte) and width */
#define SIGFUSE_BAR_SIGNAL_ENTRY_RECORD_OFFSET 0u
#define SIGFUSE_BAR_SIGNAL_ENTRY_RECORD_WIDTH 112u  /* SIGNAL_RECORD_LAYOUT (ignored for POP) */
#define SIGFUSE_BAR_SIGNAL_ENTRY_OP_OFFSET 112u
#define SIGFUSE_BAR_SIGNAL_ENTRY_OP_WIDTH 8u  /* EntryOp */
#define SIGFUSE_BAR_SIGNAL_ENTRY_RESERVED_OFFSET 120u
#define SIGFUSE_BAR_SIGNAL_ENTRY_RESERVED_WIDTH 8u  /* zero */
#define SIGFUSE_BAR_RESULT_ENTRY_RECORD_OFFSET 0u
#define SIGFUSE_BAR_RESULT_ENTRY_RECORD_WIDTH 160u  /* RESULT_RECORD_LAYOUT */
#define SIGFUSE_BAR_RESULT_ENTRY_SEQ_OFFSET 160u
#define SIGFUSE_BAR_RESULT_ENTRY_SEQ_WIDTH 32u  /* index of this result (mod 2**32) = its ring index */
#define SIGFUSE_BAR_RESULT_ENTRY_RESERVED_OFFSET 192u
#define SIGFUSE_BAR_RESULT_ENTRY_RESERVED_WIDTH 64u  /* zero */

#endif /* SIGFUSE_BAR_H */
