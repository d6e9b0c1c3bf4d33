/* The sigfuse link codec in C: see sigfuse.h and docs/link.md.
 *
 * Every rule here mirrors host/protocol.py (sigfuse.protocol), which defines the protocol;
 * tests/link/test_codec.py runs the shared vectors and a differential fuzz test against it. */
#include "sigfuse.h"

#include <string.h>

int sigfuse_codec_api(void) { return SIGFUSE_CODEC_API; }

/* --- CRC-16/IBM-3740 -------------------------------------------------------------------- */

/* Slicing-by-8 tables: crc_table[k][b] is the CRC (from 0) of byte b followed by k zero
 * bytes.  Eight independent lookups per 8 bytes instead of a chain of eight dependent ones:
 * the CRC was the largest cost of decoding a full frame. */
static const uint16_t crc_table[8][256] = {
    {
        0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50a5, 0x60c6, 0x70e7,
        0x8108, 0x9129, 0xa14a, 0xb16b, 0xc18c, 0xd1ad, 0xe1ce, 0xf1ef,
        0x1231, 0x0210, 0x3273, 0x2252, 0x52b5, 0x4294, 0x72f7, 0x62d6,
        0x9339, 0x8318, 0xb37b, 0xa35a, 0xd3bd, 0xc39c, 0xf3ff, 0xe3de,
        0x2462, 0x3443, 0x0420, 0x1401, 0x64e6, 0x74c7, 0x44a4, 0x5485,
        0xa56a, 0xb54b, 0x8528, 0x9509, 0xe5ee, 0xf5cf, 0xc5ac, 0xd58d,
        0x3653, 0x2672, 0x1611, 0x0630, 0x76d7, 0x66f6, 0x5695, 0x46b4,
        0xb75b, 0xa77a, 0x9719, 0x8738, 0xf7df, 0xe7fe, 0xd79d, 0xc7bc,
        0x48c4, 0x58e5, 0x6886, 0x78a7, 0x0840, 0x1861, 0x2802, 0x3823,
        0xc9cc, 0xd9ed, 0xe98e, 0xf9af, 0x8948, 0x9969, 0xa90a, 0xb92b,
        0x5af5, 0x4ad4, 0x7ab7, 0x6a96, 0x1a71, 0x0a50, 0x3a33, 0x2a12,
        0xdbfd, 0xcbdc, 0xfbbf, 0xeb9e, 0x9b79, 0x8b58, 0xbb3b, 0xab1a,
        0x6ca6, 0x7c87, 0x4ce4, 0x5cc5, 0x2c22, 0x3c03, 0x0c60, 0x1c41,
        0xedae, 0xfd8f, 0xcdec, 0xddcd, 0xad2a, 0xbd0b, 0x8d68, 0x9d49,
        0x7e97, 0x6eb6, 0x5ed5, 0x4ef4, 0x3e13, 0x2e32, 0x1e51, 0x0e70,
        0xff9f, 0xefbe, 0xdfdd, 0xcffc, 0xbf1b, 0xaf3a, 0x9f59, 0x8f78,
        0x9188, 0x81a9, 0xb1ca, 0xa1eb, 0xd10c, 0xc12d, 0xf14e, 0xe16f,
        0x1080, 0x00a1, 0x30c2, 0x20e3, 0x5004, 0x4025, 0x7046, 0x6067,
        0x83b9, 0x9398, 0xa3fb, 0xb3da, 0xc33d, 0xd31c, 0xe37f, 0xf35e,
        0x02b1, 0x1290, 0x22f3, 0x32d2, 0x4235, 0x5214, 0x6277, 0x7256,
        0xb5ea, 0xa5cb, 0x95a8, 0x8589, 0xf56e, 0xe54f, 0xd52c, 0xc50d,
        0x34e2, 0x24c3, 0x14a0, 0x0481, 0x7466, 0x6447, 0x5424, 0x4405,
        0xa7db, 0xb7fa, 0x8799, 0x97b8, 0xe75f, 0xf77e, 0xc71d, 0xd73c,
        0x26d3, 0x36f2, 0x0691, 0x16b0, 0x6657, 0x7676, 0x4615, 0x5634,
        0xd94c, 0xc96d, 0xf90e, 0xe92f, 0x99c8, 0x89e9, 0xb98a, 0xa9ab,
        0x5844, 0x4865, 0x7806, 0x6827, 0x18c0, 0x08e1, 0x3882, 0x28a3,
        0xcb7d, 0xdb5c, 0xeb3f, 0xfb1e, 0x8bf9, 0x9bd8, 0xabbb, 0xbb9a,
        0x4a75, 0x5a54, 0x6a37, 0x7a16, 0x0af1, 0x1ad0, 0x2ab3, 0x3a92,
        0xfd2e, 0xed0f, 0xdd6c, 0xcd4d, 0xbdaa, 0xad8b, 0x9de8, 0x8dc9,
        0x7c26, 0x6c07, 0x5c64, 0x4c45, 0x3ca2, 0x2c83, 0x1ce0, 0x0cc1,
        0xef1f, 0xff3e, 0xcf5d, 0xdf7c, 0xaf9b, 0xbfba, 0x8fd9, 0x9ff8,
        0x6e17, 0x7e36, 0x4e55, 0x5e74, 0x2e93, 0x3eb2, 0x0ed1, 0x1ef0,
    },
    {
        0x0000, 0x3331, 0x6662, 0x5553, 0xccc4, 0xfff5, 0xaaa6, 0x9997,
        0x89a9, 0xba98, 0xefcb, 0xdcfa, 0x456d, 0x765c, 0x230f, 0x103e,
        0x0373, 0x3042, 0x6511, 0x5620, 0xcfb7, 0xfc86, 0xa9d5, 0x9ae4,
        0x8ada, 0xb9eb, 0xecb8, 0xdf89, 0x461e, 0x752f, 0x207c, 0x134d,
        0x06e6, 0x35d7, 0x6084, 0x53b5, 0xca22, 0xf913, 0xac40, 0x9f71,
        0x8f4f, 0xbc7e, 0xe92d, 0xda1c, 0x438b, 0x70ba, 0x25e9, 0x16d8,
        0x0595, 0x36a4, 0x63f7, 0x50c6, 0xc951, 0xfa60, 0xaf33, 0x9c02,
        0x8c3c, 0xbf0d, 0xea5e, 0xd96f, 0x40f8, 0x73c9, 0x269a, 0x15ab,
        0x0dcc, 0x3efd, 0x6bae, 0x589f, 0xc108, 0xf239, 0xa76a, 0x945b,
        0x8465, 0xb754, 0xe207, 0xd136, 0x48a1, 0x7b90, 0x2ec3, 0x1df2,
        0x0ebf, 0x3d8e, 0x68dd, 0x5bec, 0xc27b, 0xf14a, 0xa419, 0x9728,
        0x8716, 0xb427, 0xe174, 0xd245, 0x4bd2, 0x78e3, 0x2db0, 0x1e81,
        0x0b2a, 0x381b, 0x6d48, 0x5e79, 0xc7ee, 0xf4df, 0xa18c, 0x92bd,
        0x8283, 0xb1b2, 0xe4e1, 0xd7d0, 0x4e47, 0x7d76, 0x2825, 0x1b14,
        0x0859, 0x3b68, 0x6e3b, 0x5d0a, 0xc49d, 0xf7ac, 0xa2ff, 0x91ce,
        0x81f0, 0xb2c1, 0xe792, 0xd4a3, 0x4d34, 0x7e05, 0x2b56, 0x1867,
        0x1b98, 0x28a9, 0x7dfa, 0x4ecb, 0xd75c, 0xe46d, 0xb13e, 0x820f,
        0x9231, 0xa100, 0xf453, 0xc762, 0x5ef5, 0x6dc4, 0x3897, 0x0ba6,
        0x18eb, 0x2bda, 0x7e89, 0x4db8, 0xd42f, 0xe71e, 0xb24d, 0x817c,
        0x9142, 0xa273, 0xf720, 0xc411, 0x5d86, 0x6eb7, 0x3be4, 0x08d5,
        0x1d7e, 0x2e4f, 0x7b1c, 0x482d, 0xd1ba, 0xe28b, 0xb7d8, 0x84e9,
        0x94d7, 0xa7e6, 0xf2b5, 0xc184, 0x5813, 0x6b22, 0x3e71, 0x0d40,
        0x1e0d, 0x2d3c, 0x786f, 0x4b5e, 0xd2c9, 0xe1f8, 0xb4ab, 0x879a,
        0x97a4, 0xa495, 0xf1c6, 0xc2f7, 0x5b60, 0x6851, 0x3d02, 0x0e33,
        0x1654, 0x2565, 0x7036, 0x4307, 0xda90, 0xe9a1, 0xbcf2, 0x8fc3,
        0x9ffd, 0xaccc, 0xf99f, 0xcaae, 0x5339, 0x6008, 0x355b, 0x066a,
        0x1527, 0x2616, 0x7345, 0x4074, 0xd9e3, 0xead2, 0xbf81, 0x8cb0,
        0x9c8e, 0xafbf, 0xfaec, 0xc9dd, 0x504a, 0x637b, 0x3628, 0x0519,
        0x10b2, 0x2383, 0x76d0, 0x45e1, 0xdc76, 0xef47, 0xba14, 0x8925,
        0x991b, 0xaa2a, 0xff79, 0xcc48, 0x55df, 0x66ee, 0x33bd, 0x008c,
        0x13c1, 0x20f0, 0x75a3, 0x4692, 0xdf05, 0xec34, 0xb967, 0x8a56,
        0x9a68, 0xa959, 0xfc0a, 0xcf3b, 0x56ac, 0x659d, 0x30ce, 0x03ff,
    },
    {
        0x0000, 0x3730, 0x6e60, 0x5950, 0xdcc0, 0xebf0, 0xb2a0, 0x8590,
        0xa9a1, 0x9e91, 0xc7c1, 0xf0f1, 0x7561, 0x4251, 0x1b01, 0x2c31,
        0x4363, 0x7453, 0x2d03, 0x1a33, 0x9fa3, 0xa893, 0xf1c3, 0xc6f3,
        0xeac2, 0xddf2, 0x84a2, 0xb392, 0x3602, 0x0132, 0x5862, 0x6f52,
        0x86c6, 0xb1f6, 0xe8a6, 0xdf96, 0x5a06, 0x6d36, 0x3466, 0x0356,
        0x2f67, 0x1857, 0x4107, 0x7637, 0xf3a7, 0xc497, 0x9dc7, 0xaaf7,
        0xc5a5, 0xf295, 0xabc5, 0x9cf5, 0x1965, 0x2e55, 0x7705, 0x4035,
        0x6c04, 0x5b34, 0x0264, 0x3554, 0xb0c4, 0x87f4, 0xdea4, 0xe994,
        0x1dad, 0x2a9d, 0x73cd, 0x44fd, 0xc16d, 0xf65d, 0xaf0d, 0x983d,
        0xb40c, 0x833c, 0xda6c, 0xed5c, 0x68cc, 0x5ffc, 0x06ac, 0x319c,
        0x5ece, 0x69fe, 0x30ae, 0x079e, 0x820e, 0xb53e, 0xec6e, 0xdb5e,
        0xf76f, 0xc05f, 0x990f, 0xae3f, 0x2baf, 0x1c9f, 0x45cf, 0x72ff,
        0x9b6b, 0xac5b, 0xf50b, 0xc23b, 0x47ab, 0x709b, 0x29cb, 0x1efb,
        0x32ca, 0x05fa, 0x5caa, 0x6b9a, 0xee0a, 0xd93a, 0x806a, 0xb75a,
        0xd808, 0xef38, 0xb668, 0x8158, 0x04c8, 0x33f8, 0x6aa8, 0x5d98,
        0x71a9, 0x4699, 0x1fc9, 0x28f9, 0xad69, 0x9a59, 0xc309, 0xf439,
        0x3b5a, 0x0c6a, 0x553a, 0x620a, 0xe79a, 0xd0aa, 0x89fa, 0xbeca,
        0x92fb, 0xa5cb, 0xfc9b, 0xcbab, 0x4e3b, 0x790b, 0x205b, 0x176b,
        0x7839, 0x4f09, 0x1659, 0x2169, 0xa4f9, 0x93c9, 0xca99, 0xfda9,
        0xd198, 0xe6a8, 0xbff8, 0x88c8, 0x0d58, 0x3a68, 0x6338, 0x5408,
        0xbd9c, 0x8aac, 0xd3fc, 0xe4cc, 0x615c, 0x566c, 0x0f3c, 0x380c,
        0x143d, 0x230d, 0x7a5d, 0x4d6d, 0xc8fd, 0xffcd, 0xa69d, 0x91ad,
        0xfeff, 0xc9cf, 0x909f, 0xa7af, 0x223f, 0x150f, 0x4c5f, 0x7b6f,
        0x575e, 0x606e, 0x393e, 0x0e0e, 0x8b9e, 0xbcae, 0xe5fe, 0xd2ce,
        0x26f7, 0x11c7, 0x4897, 0x7fa7, 0xfa37, 0xcd07, 0x9457, 0xa367,
        0x8f56, 0xb866, 0xe136, 0xd606, 0x5396, 0x64a6, 0x3df6, 0x0ac6,
        0x6594, 0x52a4, 0x0bf4, 0x3cc4, 0xb954, 0x8e64, 0xd734, 0xe004,
        0xcc35, 0xfb05, 0xa255, 0x9565, 0x10f5, 0x27c5, 0x7e95, 0x49a5,
        0xa031, 0x9701, 0xce51, 0xf961, 0x7cf1, 0x4bc1, 0x1291, 0x25a1,
        0x0990, 0x3ea0, 0x67f0, 0x50c0, 0xd550, 0xe260, 0xbb30, 0x8c00,
        0xe352, 0xd462, 0x8d32, 0xba02, 0x3f92, 0x08a2, 0x51f2, 0x66c2,
        0x4af3, 0x7dc3, 0x2493, 0x13a3, 0x9633, 0xa103, 0xf853, 0xcf63,
    },
    {
        0x0000, 0x76b4, 0xed68, 0x9bdc, 0xcaf1, 0xbc45, 0x2799, 0x512d,
        0x85c3, 0xf377, 0x68ab, 0x1e1f, 0x4f32, 0x3986, 0xa25a, 0xd4ee,
        0x1ba7, 0x6d13, 0xf6cf, 0x807b, 0xd156, 0xa7e2, 0x3c3e, 0x4a8a,
        0x9e64, 0xe8d0, 0x730c, 0x05b8, 0x5495, 0x2221, 0xb9fd, 0xcf49,
        0x374e, 0x41fa, 0xda26, 0xac92, 0xfdbf, 0x8b0b, 0x10d7, 0x6663,
        0xb28d, 0xc439, 0x5fe5, 0x2951, 0x787c, 0x0ec8, 0x9514, 0xe3a0,
        0x2ce9, 0x5a5d, 0xc181, 0xb735, 0xe618, 0x90ac, 0x0b70, 0x7dc4,
        0xa92a, 0xdf9e, 0x4442, 0x32f6, 0x63db, 0x156f, 0x8eb3, 0xf807,
        0x6e9c, 0x1828, 0x83f4, 0xf540, 0xa46d, 0xd2d9, 0x4905, 0x3fb1,
        0xeb5f, 0x9deb, 0x0637, 0x7083, 0x21ae, 0x571a, 0xccc6, 0xba72,
        0x753b, 0x038f, 0x9853, 0xeee7, 0xbfca, 0xc97e, 0x52a2, 0x2416,
        0xf0f8, 0x864c, 0x1d90, 0x6b24, 0x3a09, 0x4cbd, 0xd761, 0xa1d5,
        0x59d2, 0x2f66, 0xb4ba, 0xc20e, 0x9323, 0xe597, 0x7e4b, 0x08ff,
        0xdc11, 0xaaa5, 0x3179, 0x47cd, 0x16e0, 0x6054, 0xfb88, 0x8d3c,
        0x4275, 0x34c1, 0xaf1d, 0xd9a9, 0x8884, 0xfe30, 0x65ec, 0x1358,
        0xc7b6, 0xb102, 0x2ade, 0x5c6a, 0x0d47, 0x7bf3, 0xe02f, 0x969b,
        0xdd38, 0xab8c, 0x3050, 0x46e4, 0x17c9, 0x617d, 0xfaa1, 0x8c15,
        0x58fb, 0x2e4f, 0xb593, 0xc327, 0x920a, 0xe4be, 0x7f62, 0x09d6,
        0xc69f, 0xb02b, 0x2bf7, 0x5d43, 0x0c6e, 0x7ada, 0xe106, 0x97b2,
        0x435c, 0x35e8, 0xae34, 0xd880, 0x89ad, 0xff19, 0x64c5, 0x1271,
        0xea76, 0x9cc2, 0x071e, 0x71aa, 0x2087, 0x5633, 0xcdef, 0xbb5b,
        0x6fb5, 0x1901, 0x82dd, 0xf469, 0xa544, 0xd3f0, 0x482c, 0x3e98,
        0xf1d1, 0x8765, 0x1cb9, 0x6a0d, 0x3b20, 0x4d94, 0xd648, 0xa0fc,
        0x7412, 0x02a6, 0x997a, 0xefce, 0xbee3, 0xc857, 0x538b, 0x253f,
        0xb3a4, 0xc510, 0x5ecc, 0x2878, 0x7955, 0x0fe1, 0x943d, 0xe289,
        0x3667, 0x40d3, 0xdb0f, 0xadbb, 0xfc96, 0x8a22, 0x11fe, 0x674a,
        0xa803, 0xdeb7, 0x456b, 0x33df, 0x62f2, 0x1446, 0x8f9a, 0xf92e,
        0x2dc0, 0x5b74, 0xc0a8, 0xb61c, 0xe731, 0x9185, 0x0a59, 0x7ced,
        0x84ea, 0xf25e, 0x6982, 0x1f36, 0x4e1b, 0x38af, 0xa373, 0xd5c7,
        0x0129, 0x779d, 0xec41, 0x9af5, 0xcbd8, 0xbd6c, 0x26b0, 0x5004,
        0x9f4d, 0xe9f9, 0x7225, 0x0491, 0x55bc, 0x2308, 0xb8d4, 0xce60,
        0x1a8e, 0x6c3a, 0xf7e6, 0x8152, 0xd07f, 0xa6cb, 0x3d17, 0x4ba3,
    },
    {
        0x0000, 0xaa51, 0x4483, 0xeed2, 0x8906, 0x2357, 0xcd85, 0x67d4,
        0x022d, 0xa87c, 0x46ae, 0xecff, 0x8b2b, 0x217a, 0xcfa8, 0x65f9,
        0x045a, 0xae0b, 0x40d9, 0xea88, 0x8d5c, 0x270d, 0xc9df, 0x638e,
        0x0677, 0xac26, 0x42f4, 0xe8a5, 0x8f71, 0x2520, 0xcbf2, 0x61a3,
        0x08b4, 0xa2e5, 0x4c37, 0xe666, 0x81b2, 0x2be3, 0xc531, 0x6f60,
        0x0a99, 0xa0c8, 0x4e1a, 0xe44b, 0x839f, 0x29ce, 0xc71c, 0x6d4d,
        0x0cee, 0xa6bf, 0x486d, 0xe23c, 0x85e8, 0x2fb9, 0xc16b, 0x6b3a,
        0x0ec3, 0xa492, 0x4a40, 0xe011, 0x87c5, 0x2d94, 0xc346, 0x6917,
        0x1168, 0xbb39, 0x55eb, 0xffba, 0x986e, 0x323f, 0xdced, 0x76bc,
        0x1345, 0xb914, 0x57c6, 0xfd97, 0x9a43, 0x3012, 0xdec0, 0x7491,
        0x1532, 0xbf63, 0x51b1, 0xfbe0, 0x9c34, 0x3665, 0xd8b7, 0x72e6,
        0x171f, 0xbd4e, 0x539c, 0xf9cd, 0x9e19, 0x3448, 0xda9a, 0x70cb,
        0x19dc, 0xb38d, 0x5d5f, 0xf70e, 0x90da, 0x3a8b, 0xd459, 0x7e08,
        0x1bf1, 0xb1a0, 0x5f72, 0xf523, 0x92f7, 0x38a6, 0xd674, 0x7c25,
        0x1d86, 0xb7d7, 0x5905, 0xf354, 0x9480, 0x3ed1, 0xd003, 0x7a52,
        0x1fab, 0xb5fa, 0x5b28, 0xf179, 0x96ad, 0x3cfc, 0xd22e, 0x787f,
        0x22d0, 0x8881, 0x6653, 0xcc02, 0xabd6, 0x0187, 0xef55, 0x4504,
        0x20fd, 0x8aac, 0x647e, 0xce2f, 0xa9fb, 0x03aa, 0xed78, 0x4729,
        0x268a, 0x8cdb, 0x6209, 0xc858, 0xaf8c, 0x05dd, 0xeb0f, 0x415e,
        0x24a7, 0x8ef6, 0x6024, 0xca75, 0xada1, 0x07f0, 0xe922, 0x4373,
        0x2a64, 0x8035, 0x6ee7, 0xc4b6, 0xa362, 0x0933, 0xe7e1, 0x4db0,
        0x2849, 0x8218, 0x6cca, 0xc69b, 0xa14f, 0x0b1e, 0xe5cc, 0x4f9d,
        0x2e3e, 0x846f, 0x6abd, 0xc0ec, 0xa738, 0x0d69, 0xe3bb, 0x49ea,
        0x2c13, 0x8642, 0x6890, 0xc2c1, 0xa515, 0x0f44, 0xe196, 0x4bc7,
        0x33b8, 0x99e9, 0x773b, 0xdd6a, 0xbabe, 0x10ef, 0xfe3d, 0x546c,
        0x3195, 0x9bc4, 0x7516, 0xdf47, 0xb893, 0x12c2, 0xfc10, 0x5641,
        0x37e2, 0x9db3, 0x7361, 0xd930, 0xbee4, 0x14b5, 0xfa67, 0x5036,
        0x35cf, 0x9f9e, 0x714c, 0xdb1d, 0xbcc9, 0x1698, 0xf84a, 0x521b,
        0x3b0c, 0x915d, 0x7f8f, 0xd5de, 0xb20a, 0x185b, 0xf689, 0x5cd8,
        0x3921, 0x9370, 0x7da2, 0xd7f3, 0xb027, 0x1a76, 0xf4a4, 0x5ef5,
        0x3f56, 0x9507, 0x7bd5, 0xd184, 0xb650, 0x1c01, 0xf2d3, 0x5882,
        0x3d7b, 0x972a, 0x79f8, 0xd3a9, 0xb47d, 0x1e2c, 0xf0fe, 0x5aaf,
    },
    {
        0x0000, 0x45a0, 0x8b40, 0xcee0, 0x06a1, 0x4301, 0x8de1, 0xc841,
        0x0d42, 0x48e2, 0x8602, 0xc3a2, 0x0be3, 0x4e43, 0x80a3, 0xc503,
        0x1a84, 0x5f24, 0x91c4, 0xd464, 0x1c25, 0x5985, 0x9765, 0xd2c5,
        0x17c6, 0x5266, 0x9c86, 0xd926, 0x1167, 0x54c7, 0x9a27, 0xdf87,
        0x3508, 0x70a8, 0xbe48, 0xfbe8, 0x33a9, 0x7609, 0xb8e9, 0xfd49,
        0x384a, 0x7dea, 0xb30a, 0xf6aa, 0x3eeb, 0x7b4b, 0xb5ab, 0xf00b,
        0x2f8c, 0x6a2c, 0xa4cc, 0xe16c, 0x292d, 0x6c8d, 0xa26d, 0xe7cd,
        0x22ce, 0x676e, 0xa98e, 0xec2e, 0x246f, 0x61cf, 0xaf2f, 0xea8f,
        0x6a10, 0x2fb0, 0xe150, 0xa4f0, 0x6cb1, 0x2911, 0xe7f1, 0xa251,
        0x6752, 0x22f2, 0xec12, 0xa9b2, 0x61f3, 0x2453, 0xeab3, 0xaf13,
        0x7094, 0x3534, 0xfbd4, 0xbe74, 0x7635, 0x3395, 0xfd75, 0xb8d5,
        0x7dd6, 0x3876, 0xf696, 0xb336, 0x7b77, 0x3ed7, 0xf037, 0xb597,
        0x5f18, 0x1ab8, 0xd458, 0x91f8, 0x59b9, 0x1c19, 0xd2f9, 0x9759,
        0x525a, 0x17fa, 0xd91a, 0x9cba, 0x54fb, 0x115b, 0xdfbb, 0x9a1b,
        0x459c, 0x003c, 0xcedc, 0x8b7c, 0x433d, 0x069d, 0xc87d, 0x8ddd,
        0x48de, 0x0d7e, 0xc39e, 0x863e, 0x4e7f, 0x0bdf, 0xc53f, 0x809f,
        0xd420, 0x9180, 0x5f60, 0x1ac0, 0xd281, 0x9721, 0x59c1, 0x1c61,
        0xd962, 0x9cc2, 0x5222, 0x1782, 0xdfc3, 0x9a63, 0x5483, 0x1123,
        0xcea4, 0x8b04, 0x45e4, 0x0044, 0xc805, 0x8da5, 0x4345, 0x06e5,
        0xc3e6, 0x8646, 0x48a6, 0x0d06, 0xc547, 0x80e7, 0x4e07, 0x0ba7,
        0xe128, 0xa488, 0x6a68, 0x2fc8, 0xe789, 0xa229, 0x6cc9, 0x2969,
        0xec6a, 0xa9ca, 0x672a, 0x228a, 0xeacb, 0xaf6b, 0x618b, 0x242b,
        0xfbac, 0xbe0c, 0x70ec, 0x354c, 0xfd0d, 0xb8ad, 0x764d, 0x33ed,
        0xf6ee, 0xb34e, 0x7dae, 0x380e, 0xf04f, 0xb5ef, 0x7b0f, 0x3eaf,
        0xbe30, 0xfb90, 0x3570, 0x70d0, 0xb891, 0xfd31, 0x33d1, 0x7671,
        0xb372, 0xf6d2, 0x3832, 0x7d92, 0xb5d3, 0xf073, 0x3e93, 0x7b33,
        0xa4b4, 0xe114, 0x2ff4, 0x6a54, 0xa215, 0xe7b5, 0x2955, 0x6cf5,
        0xa9f6, 0xec56, 0x22b6, 0x6716, 0xaf57, 0xeaf7, 0x2417, 0x61b7,
        0x8b38, 0xce98, 0x0078, 0x45d8, 0x8d99, 0xc839, 0x06d9, 0x4379,
        0x867a, 0xc3da, 0x0d3a, 0x489a, 0x80db, 0xc57b, 0x0b9b, 0x4e3b,
        0x91bc, 0xd41c, 0x1afc, 0x5f5c, 0x971d, 0xd2bd, 0x1c5d, 0x59fd,
        0x9cfe, 0xd95e, 0x17be, 0x521e, 0x9a5f, 0xdfff, 0x111f, 0x54bf,
    },
    {
        0x0000, 0xb861, 0x60e3, 0xd882, 0xc1c6, 0x79a7, 0xa125, 0x1944,
        0x93ad, 0x2bcc, 0xf34e, 0x4b2f, 0x526b, 0xea0a, 0x3288, 0x8ae9,
        0x377b, 0x8f1a, 0x5798, 0xeff9, 0xf6bd, 0x4edc, 0x965e, 0x2e3f,
        0xa4d6, 0x1cb7, 0xc435, 0x7c54, 0x6510, 0xdd71, 0x05f3, 0xbd92,
        0x6ef6, 0xd697, 0x0e15, 0xb674, 0xaf30, 0x1751, 0xcfd3, 0x77b2,
        0xfd5b, 0x453a, 0x9db8, 0x25d9, 0x3c9d, 0x84fc, 0x5c7e, 0xe41f,
        0x598d, 0xe1ec, 0x396e, 0x810f, 0x984b, 0x202a, 0xf8a8, 0x40c9,
        0xca20, 0x7241, 0xaac3, 0x12a2, 0x0be6, 0xb387, 0x6b05, 0xd364,
        0xddec, 0x658d, 0xbd0f, 0x056e, 0x1c2a, 0xa44b, 0x7cc9, 0xc4a8,
        0x4e41, 0xf620, 0x2ea2, 0x96c3, 0x8f87, 0x37e6, 0xef64, 0x5705,
        0xea97, 0x52f6, 0x8a74, 0x3215, 0x2b51, 0x9330, 0x4bb2, 0xf3d3,
        0x793a, 0xc15b, 0x19d9, 0xa1b8, 0xb8fc, 0x009d, 0xd81f, 0x607e,
        0xb31a, 0x0b7b, 0xd3f9, 0x6b98, 0x72dc, 0xcabd, 0x123f, 0xaa5e,
        0x20b7, 0x98d6, 0x4054, 0xf835, 0xe171, 0x5910, 0x8192, 0x39f3,
        0x8461, 0x3c00, 0xe482, 0x5ce3, 0x45a7, 0xfdc6, 0x2544, 0x9d25,
        0x17cc, 0xafad, 0x772f, 0xcf4e, 0xd60a, 0x6e6b, 0xb6e9, 0x0e88,
        0xabf9, 0x1398, 0xcb1a, 0x737b, 0x6a3f, 0xd25e, 0x0adc, 0xb2bd,
        0x3854, 0x8035, 0x58b7, 0xe0d6, 0xf992, 0x41f3, 0x9971, 0x2110,
        0x9c82, 0x24e3, 0xfc61, 0x4400, 0x5d44, 0xe525, 0x3da7, 0x85c6,
        0x0f2f, 0xb74e, 0x6fcc, 0xd7ad, 0xcee9, 0x7688, 0xae0a, 0x166b,
        0xc50f, 0x7d6e, 0xa5ec, 0x1d8d, 0x04c9, 0xbca8, 0x642a, 0xdc4b,
        0x56a2, 0xeec3, 0x3641, 0x8e20, 0x9764, 0x2f05, 0xf787, 0x4fe6,
        0xf274, 0x4a15, 0x9297, 0x2af6, 0x33b2, 0x8bd3, 0x5351, 0xeb30,
        0x61d9, 0xd9b8, 0x013a, 0xb95b, 0xa01f, 0x187e, 0xc0fc, 0x789d,
        0x7615, 0xce74, 0x16f6, 0xae97, 0xb7d3, 0x0fb2, 0xd730, 0x6f51,
        0xe5b8, 0x5dd9, 0x855b, 0x3d3a, 0x247e, 0x9c1f, 0x449d, 0xfcfc,
        0x416e, 0xf90f, 0x218d, 0x99ec, 0x80a8, 0x38c9, 0xe04b, 0x582a,
        0xd2c3, 0x6aa2, 0xb220, 0x0a41, 0x1305, 0xab64, 0x73e6, 0xcb87,
        0x18e3, 0xa082, 0x7800, 0xc061, 0xd925, 0x6144, 0xb9c6, 0x01a7,
        0x8b4e, 0x332f, 0xebad, 0x53cc, 0x4a88, 0xf2e9, 0x2a6b, 0x920a,
        0x2f98, 0x97f9, 0x4f7b, 0xf71a, 0xee5e, 0x563f, 0x8ebd, 0x36dc,
        0xbc35, 0x0454, 0xdcd6, 0x64b7, 0x7df3, 0xc592, 0x1d10, 0xa571,
    },
    {
        0x0000, 0x47d3, 0x8fa6, 0xc875, 0x0f6d, 0x48be, 0x80cb, 0xc718,
        0x1eda, 0x5909, 0x917c, 0xd6af, 0x11b7, 0x5664, 0x9e11, 0xd9c2,
        0x3db4, 0x7a67, 0xb212, 0xf5c1, 0x32d9, 0x750a, 0xbd7f, 0xfaac,
        0x236e, 0x64bd, 0xacc8, 0xeb1b, 0x2c03, 0x6bd0, 0xa3a5, 0xe476,
        0x7b68, 0x3cbb, 0xf4ce, 0xb31d, 0x7405, 0x33d6, 0xfba3, 0xbc70,
        0x65b2, 0x2261, 0xea14, 0xadc7, 0x6adf, 0x2d0c, 0xe579, 0xa2aa,
        0x46dc, 0x010f, 0xc97a, 0x8ea9, 0x49b1, 0x0e62, 0xc617, 0x81c4,
        0x5806, 0x1fd5, 0xd7a0, 0x9073, 0x576b, 0x10b8, 0xd8cd, 0x9f1e,
        0xf6d0, 0xb103, 0x7976, 0x3ea5, 0xf9bd, 0xbe6e, 0x761b, 0x31c8,
        0xe80a, 0xafd9, 0x67ac, 0x207f, 0xe767, 0xa0b4, 0x68c1, 0x2f12,
        0xcb64, 0x8cb7, 0x44c2, 0x0311, 0xc409, 0x83da, 0x4baf, 0x0c7c,
        0xd5be, 0x926d, 0x5a18, 0x1dcb, 0xdad3, 0x9d00, 0x5575, 0x12a6,
        0x8db8, 0xca6b, 0x021e, 0x45cd, 0x82d5, 0xc506, 0x0d73, 0x4aa0,
        0x9362, 0xd4b1, 0x1cc4, 0x5b17, 0x9c0f, 0xdbdc, 0x13a9, 0x547a,
        0xb00c, 0xf7df, 0x3faa, 0x7879, 0xbf61, 0xf8b2, 0x30c7, 0x7714,
        0xaed6, 0xe905, 0x2170, 0x66a3, 0xa1bb, 0xe668, 0x2e1d, 0x69ce,
        0xfd81, 0xba52, 0x7227, 0x35f4, 0xf2ec, 0xb53f, 0x7d4a, 0x3a99,
        0xe35b, 0xa488, 0x6cfd, 0x2b2e, 0xec36, 0xabe5, 0x6390, 0x2443,
        0xc035, 0x87e6, 0x4f93, 0x0840, 0xcf58, 0x888b, 0x40fe, 0x072d,
        0xdeef, 0x993c, 0x5149, 0x169a, 0xd182, 0x9651, 0x5e24, 0x19f7,
        0x86e9, 0xc13a, 0x094f, 0x4e9c, 0x8984, 0xce57, 0x0622, 0x41f1,
        0x9833, 0xdfe0, 0x1795, 0x5046, 0x975e, 0xd08d, 0x18f8, 0x5f2b,
        0xbb5d, 0xfc8e, 0x34fb, 0x7328, 0xb430, 0xf3e3, 0x3b96, 0x7c45,
        0xa587, 0xe254, 0x2a21, 0x6df2, 0xaaea, 0xed39, 0x254c, 0x629f,
        0x0b51, 0x4c82, 0x84f7, 0xc324, 0x043c, 0x43ef, 0x8b9a, 0xcc49,
        0x158b, 0x5258, 0x9a2d, 0xddfe, 0x1ae6, 0x5d35, 0x9540, 0xd293,
        0x36e5, 0x7136, 0xb943, 0xfe90, 0x3988, 0x7e5b, 0xb62e, 0xf1fd,
        0x283f, 0x6fec, 0xa799, 0xe04a, 0x2752, 0x6081, 0xa8f4, 0xef27,
        0x7039, 0x37ea, 0xff9f, 0xb84c, 0x7f54, 0x3887, 0xf0f2, 0xb721,
        0x6ee3, 0x2930, 0xe145, 0xa696, 0x618e, 0x265d, 0xee28, 0xa9fb,
        0x4d8d, 0x0a5e, 0xc22b, 0x85f8, 0x42e0, 0x0533, 0xcd46, 0x8a95,
        0x5357, 0x1484, 0xdcf1, 0x9b22, 0x5c3a, 0x1be9, 0xd39c, 0x944f,
    },
};

uint16_t sigfuse_crc16_update(uint16_t crc, const uint8_t *data, size_t len)
{
    /* MSB first: the 16-bit register lines up with the first two bytes of each 8-byte step. */
    while (len >= 8) {
        crc = (uint16_t)(crc_table[7][data[0] ^ (crc >> 8)] ^ crc_table[6][data[1] ^ (crc & 0xffu)] ^
                         crc_table[5][data[2]] ^ crc_table[4][data[3]] ^ crc_table[3][data[4]] ^
                         crc_table[2][data[5]] ^ crc_table[1][data[6]] ^ crc_table[0][data[7]]);
        data += 8;
        len -= 8;
    }
    while (len--)
        crc = (uint16_t)((crc << 8) ^ crc_table[0][((crc >> 8) ^ *data++) & 0xffu]);
    return crc;
}

uint16_t sigfuse_crc16(const uint8_t *data, size_t len)
{
    return sigfuse_crc16_update((uint16_t)SIGFUSE_CRC_INIT, data, len);
}

/* --- COBS ------------------------------------------------------------------------------- */

/* The encoding of the Python `cobs` package, byte for byte: a run of 254 non-zero bytes that
 * ends the input gets no trailing empty block; an empty input encodes as 01.
 *
 * Records are full of zeros at random places, so a branch on "is this byte zero" mispredicts
 * often.  Instead every byte is copied where it would go if it were not zero -- which is
 * where the next block's code byte goes if it is -- and the open block's code is stored on
 * every step, so it is final when the block closes: no data-dependent branch. */
size_t sigfuse_cobs_encode(const uint8_t *in, size_t len, uint8_t *out)
{
    size_t code_at = 0, o = 1, i;
    unsigned code = 1;
    int after_full_block = 0;
    if (len <= 254) {
        /* Every frame: at most one block can be full, and only as the last one, so the
         * 0xFF case needs no special step.  Each byte lands one place further; a zero's place
         * takes the next block's code byte.  Copy all, then visit only the zeros. */
        memcpy(out + 1, in, len);
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        /* Eight bytes at a time: an exact mask of the zero bytes, then one step per zero. */
        for (i = 0; i < len; i += 8) {
            uint64_t word = 0x0101010101010101u, low7 = 0x7f7f7f7f7f7f7f7fu, zeros;
            memcpy(&word, in + i, len - i < 8 ? len - i : 8);
            zeros = ~(((word & low7) + low7) | word | low7);
            while (zeros) {
                size_t at = i + (size_t)(__builtin_ctzll(zeros) >> 3) + 1;
                out[code_at] = (uint8_t)(at - code_at);
                code_at = at;
                zeros &= zeros - 1;
            }
        }
#else
        for (i = 0; i < len; i++) {
            if (in[i] == 0) {
                out[code_at] = (uint8_t)(i + 1 - code_at);
                code_at = i + 1;
            }
        }
#endif
        out[code_at] = (uint8_t)(len + 1 - code_at);
        return len + 1;
    }
    for (i = 0; i < len; i++) {
        unsigned zero = in[i] == 0;
        out[o] = in[i];
        out[code_at] = (uint8_t)code;
        code_at = zero ? o : code_at;
        code = zero ? 1u : code + 1u;
        o++;
        after_full_block = 0;
        if (code == 0xffu) {  /* 254 bytes without a zero: close the block */
            out[code_at] = 0xff;
            code_at = o++;
            code = 1;
            after_full_block = 1;
        }
    }
    if (after_full_block)
        return o - 1;  /* no empty block after a full one at the end */
    out[code_at] = (uint8_t)code;
    return o;
}

long sigfuse_cobs_decode(const uint8_t *in, size_t len, uint8_t *out)
{
    /* Copy everything one place back, then walk the code bytes: each one that ends a block
     * of fewer than 254 bytes becomes a zero.  Records are full of zeros, so blocks are short:
     * a copy loop per block would mispredict its exit once per block. */
    size_t at = 0, shift = 1;
    if (len == 0)
        return 0;
    if (memchr(in, 0, len) != NULL)
        return -1;
    memcpy(out, in + 1, len - 1);
    for (;;) {
        size_t end = at + in[at];  /* where the next code byte is */
        if (end > len)
            return -1;             /* the last block ends before its code byte said */
        if (end == len)
            return (long)(len - shift);
        if (in[at] == 0xff) {      /* a full block: no zero, later bytes move one more place */
            memmove(out + end - shift, in + end + 1, len - end - 1);
            shift++;
        } else {
            out[end - shift] = 0;
        }
        at = end;
    }
}

/* --- frames ----------------------------------------------------------------------------- */

size_t sigfuse_frame_encode(uint8_t type, uint8_t seq, const uint8_t *body, size_t body_len,
                            uint8_t *out)
{
    uint8_t payload[SIGFUSE_MAX_FRAME];
    uint16_t crc;
    size_t n;
    if (body_len > SIGFUSE_MAX_BODY)
        return 0;
    payload[0] = type;
    payload[1] = seq;
    if (body_len)
        memcpy(payload + SIGFUSE_HEADER_BYTES, body, body_len);
    n = SIGFUSE_HEADER_BYTES + body_len;
    crc = sigfuse_crc16(payload, n);
    payload[n++] = (uint8_t)(crc >> 8);
    payload[n++] = (uint8_t)crc;
    n = sigfuse_cobs_encode(payload, n, out);
    out[n++] = SIGFUSE_DELIMITER;
    return n;
}

/* The classification of docs/link.md, in its order: oversize, bad COBS, truncated, bad CRC. */
static int decode_segment(const uint8_t *segment, size_t len, uint8_t *payload, size_t *payload_len,
                          struct sigfuse_drop_detail *detail)
{
    long n;
    struct sigfuse_drop_detail scratch;
    if (detail == NULL)
        detail = &scratch;
    memset(detail, 0, sizeof *detail);
    if (len > SIGFUSE_MAX_ENCODED)
        return SIGFUSE_LINK_OVERSIZE;
    n = sigfuse_cobs_decode(segment, len, payload);
    if (n < 0)
        return SIGFUSE_LINK_BAD_COBS;
    detail->decoded_len = (uint16_t)n;
    if ((size_t)n < SIGFUSE_MIN_FRAME)
        return SIGFUSE_LINK_TRUNCATED;
    /* A CRC without final XOR over data + CRC (MSB first) leaves residue 0. */
    if (sigfuse_crc16(payload, (size_t)n) != 0) {
        detail->crc_got = (uint16_t)(payload[n - 2] << 8 | payload[n - 1]);
        detail->crc_computed = sigfuse_crc16(payload, (size_t)n - SIGFUSE_CRC_BYTES);
        return SIGFUSE_LINK_BAD_CRC;
    }
    *payload_len = (size_t)n;
    return SIGFUSE_LINK_OK;
}

int sigfuse_frame_decode(const uint8_t *segment, size_t len, struct sigfuse_frame *frame,
                         struct sigfuse_drop_detail *detail)
{
    uint8_t payload[SIGFUSE_MAX_ENCODED];
    size_t n = 0;
    int verdict;
    if (memchr(segment, 0, len) != NULL)  /* as decode_frame: checked before the length */
        return SIGFUSE_LINK_BAD_COBS;
    verdict = decode_segment(segment, len, payload, &n, detail);
    if (verdict != SIGFUSE_LINK_OK)
        return verdict;
    frame->type = payload[0];
    frame->seq = payload[1];
    frame->body_len = (uint8_t)(n - SIGFUSE_HEADER_BYTES - SIGFUSE_CRC_BYTES);
    memcpy(frame->body, payload + SIGFUSE_HEADER_BYTES, frame->body_len);
    return SIGFUSE_LINK_OK;
}

void sigfuse_deframer_init(struct sigfuse_deframer *d)
{
    memset(d, 0, sizeof *d);
}

static void count(struct sigfuse_deframer *d, int verdict)
{
    switch (verdict) {
    case SIGFUSE_LINK_OK: d->frames_ok++; break;
    case SIGFUSE_LINK_OVERSIZE: d->frames_oversize++; break;
    case SIGFUSE_LINK_BAD_COBS: d->frames_bad_cobs++; break;
    case SIGFUSE_LINK_TRUNCATED: d->frames_truncated++; break;
    default: d->frames_bad_crc++; break;
    }
}

/* Find the next segment ended by a delimiter in data.  Returns the bytes consumed (delimiter
 * included) and sets *segment / *seg_len to the complete segment (from data itself when
 * nothing was pending: no copy) and *overflowed; *found = 0 when data ran out first (the
 * bytes are then pending in d). */
static size_t next_segment(struct sigfuse_deframer *d, const uint8_t *data, size_t len,
                           const uint8_t **segment, size_t *seg_len, int *overflowed, int *found)
{
    size_t start = 0;
    for (;;) {
        const uint8_t *hit = memchr(data + start, 0, len - start);
        size_t chunk = (hit ? (size_t)(hit - data) : len) - start;
        if (hit && !d->overflowed && d->pending_len == 0 && chunk == 0) {
            start++;  /* delimiters in a row: idle, not a frame */
            continue;
        }
        if (hit && !d->overflowed && d->pending_len == 0 && chunk <= SIGFUSE_MAX_ENCODED) {
            *segment = data + start;
            *seg_len = chunk;
            *overflowed = 0;
            *found = 1;
            return start + chunk + 1;
        }
        /* Keep at most SIGFUSE_MAX_ENCODED bytes of an unfinished segment: garbage without
         * delimiters cannot make the receiver's buffer grow. */
        if (!d->overflowed) {
            if (d->pending_len + chunk > SIGFUSE_MAX_ENCODED) {
                d->overflowed = 1;
                d->pending_len = 0;
            } else {
                memcpy(d->pending + d->pending_len, data + start, chunk);
                d->pending_len = (uint16_t)(d->pending_len + chunk);
            }
        }
        if (!hit) {
            *found = 0;
            return len;
        }
        *segment = d->pending;
        *seg_len = d->pending_len;
        *overflowed = d->overflowed;
        *found = 1;
        d->pending_len = 0;
        d->overflowed = 0;
        return start + chunk + 1;
    }
}

static int classify(struct sigfuse_deframer *d, const uint8_t *segment, size_t seg_len,
                    int overflowed, uint8_t *payload, size_t *payload_len,
                    struct sigfuse_drop_detail *detail)
{
    int verdict;
    if (overflowed) {
        if (detail)
            memset(detail, 0, sizeof *detail);
        verdict = SIGFUSE_LINK_OVERSIZE;
    } else {
        verdict = decode_segment(segment, seg_len, payload, payload_len, detail);
    }
    count(d, verdict);
    return verdict;
}

size_t sigfuse_deframer_feed(struct sigfuse_deframer *d, const uint8_t *data, size_t len,
                             int *verdict, struct sigfuse_frame *frame,
                             struct sigfuse_drop_detail *detail)
{
    const uint8_t *segment = NULL;
    size_t seg_len = 0, used, n = 0;
    int overflowed = 0, found = 0;
    uint8_t payload[SIGFUSE_MAX_ENCODED];
    used = next_segment(d, data, len, &segment, &seg_len, &overflowed, &found);
    if (!found) {
        *verdict = SIGFUSE_LINK_MORE;
        return used;
    }
    *verdict = classify(d, segment, seg_len, overflowed, payload, &n, detail);
    if (*verdict == SIGFUSE_LINK_OK && frame != NULL) {
        frame->type = payload[0];
        frame->seq = payload[1];
        frame->body_len = (uint8_t)(n - SIGFUSE_HEADER_BYTES - SIGFUSE_CRC_BYTES);
        memcpy(frame->body, payload + SIGFUSE_HEADER_BYTES, frame->body_len);
    }
    return used;
}

size_t sigfuse_deframer_feed_batch(struct sigfuse_deframer *d, const uint8_t *data, size_t len,
                                   struct sigfuse_event *events, size_t max_events,
                                   uint8_t *bodies, size_t *consumed)
{
    size_t pos = 0, n_events = 0, body_pos = 0;
    uint8_t payload[SIGFUSE_MAX_ENCODED];
    while (pos < len && n_events < max_events) {
        const uint8_t *segment = NULL;
        size_t seg_len = 0, n = 0;
        int overflowed = 0, found = 0, verdict;
        struct sigfuse_event *e;
        pos += next_segment(d, data + pos, len - pos, &segment, &seg_len, &overflowed, &found);
        if (!found)
            break;
        e = &events[n_events++];
        verdict = classify(d, segment, seg_len, overflowed, payload, &n, &e->detail);
        e->verdict = (int16_t)verdict;
        if (verdict == SIGFUSE_LINK_OK) {
            size_t body_len = n - SIGFUSE_HEADER_BYTES - SIGFUSE_CRC_BYTES;
            e->type = payload[0];
            e->seq = payload[1];
            e->body_offset = (uint32_t)body_pos;
            e->body_len = (uint16_t)body_len;
            memcpy(bodies + body_pos, payload + SIGFUSE_HEADER_BYTES, body_len);
            body_pos += body_len;
        } else {
            e->type = e->seq = 0;
            e->body_offset = (uint32_t)body_pos;
            e->body_len = 0;
        }
    }
    *consumed = pos;
    return n_events;
}

size_t sigfuse_encode_frames(size_t n, const uint8_t *types, const uint8_t *seqs,
                             const uint8_t *bodies, const uint16_t *body_lens, uint8_t *out)
{
    size_t i, o = 0, b = 0;
    for (i = 0; i < n; i++) {
        size_t w = sigfuse_frame_encode(types[i], seqs[i], bodies + b, body_lens[i], out + o);
        if (w == 0)
            return 0;
        o += w;
        b += body_lens[i];
    }
    return o;
}

/* --- records ---------------------------------------------------------------------------- */

/* Records are LSB first: bit k of the record is bit k % 8 of byte k / 8. */
static uint64_t get_bits(const uint8_t *buf, unsigned offset, unsigned width)
{
    uint64_t value = 0;
    unsigned done = 0;
    while (done < width) {
        unsigned bit = offset + done, shift = bit & 7u, take = 8u - shift;
        if (take > width - done)
            take = width - done;
        value |= (uint64_t)((buf[bit >> 3] >> shift) & ((1u << take) - 1u)) << done;
        done += take;
    }
    return value;
}

static void set_bits(uint8_t *buf, unsigned offset, unsigned width, uint64_t value)
{
    unsigned done = 0;
    while (done < width) {
        unsigned bit = offset + done, shift = bit & 7u, take = 8u - shift;
        uint8_t mask;
        if (take > width - done)
            take = width - done;
        mask = (uint8_t)(((1u << take) - 1u) << shift);
        buf[bit >> 3] = (uint8_t)((buf[bit >> 3] & ~mask) | (((value >> done) << shift) & mask));
        done += take;
    }
}

/* Any bit set in [offset, offset + width)? */
static int any_bits(const uint8_t *buf, unsigned offset, unsigned width)
{
    while (width) {
        unsigned take = width > 64 ? 64 : width;
        if (get_bits(buf, offset, take))
            return 1;
        offset += take;
        width -= take;
    }
    return 0;
}

#define SIGNAL_BITS (SIGFUSE_SIGNAL_RESERVED_OFFSET)

static int pack_signal_at(const struct sigfuse_signal *s, uint8_t *out)
{
    if (s->source > 7 || s->side > 1)
        return -1;
    set_bits(out, SIGFUSE_SIGNAL_TS_US_OFFSET, SIGFUSE_SIGNAL_TS_US_WIDTH, s->ts_us);
    set_bits(out, SIGFUSE_SIGNAL_PAIR_OFFSET, SIGFUSE_SIGNAL_PAIR_WIDTH, s->pair);
    set_bits(out, SIGFUSE_SIGNAL_SOURCE_OFFSET, SIGFUSE_SIGNAL_SOURCE_WIDTH, s->source);
    set_bits(out, SIGFUSE_SIGNAL_SIDE_OFFSET, SIGFUSE_SIGNAL_SIDE_WIDTH, s->side);
    set_bits(out, SIGFUSE_SIGNAL_CONFIDENCE_OFFSET, SIGFUSE_SIGNAL_CONFIDENCE_WIDTH, s->confidence);
    set_bits(out, SIGFUSE_SIGNAL_EDGE_BPS_OFFSET, SIGFUSE_SIGNAL_EDGE_BPS_WIDTH, (uint16_t)s->edge_bps);
    return 0;
}

static void unpack_signal_at(const uint8_t *in, struct sigfuse_signal *s)
{
    s->ts_us = get_bits(in, SIGFUSE_SIGNAL_TS_US_OFFSET, SIGFUSE_SIGNAL_TS_US_WIDTH);
    s->pair = (uint8_t)get_bits(in, SIGFUSE_SIGNAL_PAIR_OFFSET, SIGFUSE_SIGNAL_PAIR_WIDTH);
    s->source = (uint8_t)get_bits(in, SIGFUSE_SIGNAL_SOURCE_OFFSET, SIGFUSE_SIGNAL_SOURCE_WIDTH);
    s->side = (uint8_t)get_bits(in, SIGFUSE_SIGNAL_SIDE_OFFSET, SIGFUSE_SIGNAL_SIDE_WIDTH);
    s->confidence = (uint16_t)get_bits(in, SIGFUSE_SIGNAL_CONFIDENCE_OFFSET, SIGFUSE_SIGNAL_CONFIDENCE_WIDTH);
    s->edge_bps = (int16_t)(uint16_t)get_bits(in, SIGFUSE_SIGNAL_EDGE_BPS_OFFSET, SIGFUSE_SIGNAL_EDGE_BPS_WIDTH);
}

int sigfuse_pack_signal(const struct sigfuse_signal *s, uint8_t *out)
{
    memset(out, 0, SIGFUSE_SIGNAL_RECORD_BYTES);
    return pack_signal_at(s, out);
}

int sigfuse_unpack_signal(const uint8_t *in, struct sigfuse_signal *s)
{
    if (any_bits(in, SIGFUSE_SIGNAL_RESERVED_OFFSET, SIGFUSE_SIGNAL_RESERVED_WIDTH))
        return -1;
    unpack_signal_at(in, s);
    return 0;
}

int sigfuse_pack_result(const struct sigfuse_result *r, uint8_t *out)
{
    const struct sigfuse_decision *d = &r->decision;
    memset(out, 0, SIGFUSE_RESULT_RECORD_BYTES);
    switch (r->kind) {
    case SIGFUSE_RESULT_POPPED_EMPTY:
        break;
    case SIGFUSE_RESULT_STALE:
        if (pack_signal_at(&r->signal, out) != 0)
            return -1;
        break;
    case SIGFUSE_RESULT_DECISION: case SIGFUSE_RESULT_POPPED:
    case SIGFUSE_RESULT_EVICTED: case SIGFUSE_RESULT_REJECTED:
        if (d->side > 1)
            return -1;
        set_bits(out, SIGFUSE_DECISION_TS_US_OFFSET, SIGFUSE_DECISION_TS_US_WIDTH, d->ts_us);
        set_bits(out, SIGFUSE_DECISION_PAIR_OFFSET, SIGFUSE_DECISION_PAIR_WIDTH, d->pair);
        set_bits(out, SIGFUSE_DECISION_SIDE_OFFSET, SIGFUSE_DECISION_SIDE_WIDTH, d->side);
        set_bits(out, SIGFUSE_DECISION_CONFIDENCE_OFFSET, SIGFUSE_DECISION_CONFIDENCE_WIDTH, d->confidence);
        set_bits(out, SIGFUSE_DECISION_EDGE_BPS_OFFSET, SIGFUSE_DECISION_EDGE_BPS_WIDTH, (uint16_t)d->edge_bps);
        set_bits(out, SIGFUSE_DECISION_PRIORITY_OFFSET, SIGFUSE_DECISION_PRIORITY_WIDTH, d->priority);
        set_bits(out, SIGFUSE_DECISION_SEQ_OFFSET, SIGFUSE_DECISION_SEQ_WIDTH, d->seq);
        break;
    default:
        return -1;
    }
    set_bits(out, SIGFUSE_RESULT_KIND_OFFSET, SIGFUSE_RESULT_KIND_WIDTH, r->kind);
    return 0;
}

int sigfuse_unpack_result(const uint8_t *in, struct sigfuse_result *r)
{
    struct sigfuse_decision *d = &r->decision;
    memset(r, 0, sizeof *r);
    if (any_bits(in, SIGFUSE_RESULT_RESERVED_OFFSET, SIGFUSE_RESULT_RESERVED_WIDTH))
        return -1;
    r->kind = (uint8_t)get_bits(in, SIGFUSE_RESULT_KIND_OFFSET, SIGFUSE_RESULT_KIND_WIDTH);
    switch (r->kind) {
    case SIGFUSE_RESULT_POPPED_EMPTY:
        return any_bits(in, SIGFUSE_RESULT_RECORD_OFFSET, SIGFUSE_RESULT_RECORD_WIDTH) ? -1 : 0;
    case SIGFUSE_RESULT_STALE:
        if (any_bits(in, SIGNAL_BITS, SIGFUSE_RESULT_RECORD_WIDTH - SIGNAL_BITS))
            return -1;
        unpack_signal_at(in, &r->signal);
        return 0;
    case SIGFUSE_RESULT_DECISION: case SIGFUSE_RESULT_POPPED:
    case SIGFUSE_RESULT_EVICTED: case SIGFUSE_RESULT_REJECTED:
        d->ts_us = get_bits(in, SIGFUSE_DECISION_TS_US_OFFSET, SIGFUSE_DECISION_TS_US_WIDTH);
        d->pair = (uint8_t)get_bits(in, SIGFUSE_DECISION_PAIR_OFFSET, SIGFUSE_DECISION_PAIR_WIDTH);
        d->side = (uint8_t)get_bits(in, SIGFUSE_DECISION_SIDE_OFFSET, SIGFUSE_DECISION_SIDE_WIDTH);
        d->confidence = (uint16_t)get_bits(in, SIGFUSE_DECISION_CONFIDENCE_OFFSET, SIGFUSE_DECISION_CONFIDENCE_WIDTH);
        d->edge_bps = (int16_t)(uint16_t)get_bits(in, SIGFUSE_DECISION_EDGE_BPS_OFFSET, SIGFUSE_DECISION_EDGE_BPS_WIDTH);
        d->priority = (uint16_t)get_bits(in, SIGFUSE_DECISION_PRIORITY_OFFSET, SIGFUSE_DECISION_PRIORITY_WIDTH);
        d->seq = (uint32_t)get_bits(in, SIGFUSE_DECISION_SEQ_OFFSET, SIGFUSE_DECISION_SEQ_WIDTH);
        return 0;
    default:
        return -1;  /* kinds 6 and 7 do not exist */
    }
}

/* --- commands and replies --------------------------------------------------------------- */

static void put_le(uint8_t *out, uint64_t value, unsigned bytes)
{
    unsigned i;
    for (i = 0; i < bytes; i++)
        out[i] = (uint8_t)(value >> (8 * i));
}

static uint32_t get_le(const uint8_t *in, unsigned bytes)
{
    uint32_t value = 0;
    unsigned i;
    for (i = 0; i < bytes; i++)
        value |= (uint32_t)in[i] << (8 * i);
    return value;
}

size_t sigfuse_body_reg_read(const uint16_t *addrs, size_t n, uint8_t *body)
{
    size_t i;
    if (n < 1 || n > SIGFUSE_MAX_REGS)
        return 0;
    for (i = 0; i < n; i++)
        put_le(body + 2 * i, addrs[i], 2);
    return 2 * n;
}

size_t sigfuse_body_reg_write(const uint16_t *addrs, const uint32_t *values, size_t n,
                              uint8_t *body)
{
    size_t i;
    if (n < 1 || n > SIGFUSE_MAX_REGS)
        return 0;
    for (i = 0; i < n; i++) {
        put_le(body + SIGFUSE_REG_ACCESS_BYTES * i, addrs[i], 2);
        put_le(body + SIGFUSE_REG_ACCESS_BYTES * i + 2, values[i], 4);
    }
    return SIGFUSE_REG_ACCESS_BYTES * n;
}

size_t sigfuse_body_push_signals(const struct sigfuse_signal *signals, size_t n, uint8_t *body)
{
    size_t i;
    if (n < 1 || n > SIGFUSE_MAX_SIGNALS)
        return 0;
    for (i = 0; i < n; i++)
        if (sigfuse_pack_signal(&signals[i], body + SIGFUSE_SIGNAL_RECORD_BYTES * i) != 0)
            return 0;
    return SIGFUSE_SIGNAL_RECORD_BYTES * n;
}

int sigfuse_parse_reply(const struct sigfuse_frame *frame, struct sigfuse_reply *reply)
{
    const uint8_t *rest = frame->body + SIGFUSE_REPLY_PREFIX_BYTES;
    size_t rest_len, i;
    switch (frame->type) {
    case SIGFUSE_FRAME_PONG: case SIGFUSE_FRAME_REG_READ_REPLY: case SIGFUSE_FRAME_REG_WRITE_ACK:
    case SIGFUSE_FRAME_PUSH_ACK: case SIGFUSE_FRAME_POP_ACK: case SIGFUSE_FRAME_STATS_REPLY:
    case SIGFUSE_FRAME_RESULTS: case SIGFUSE_FRAME_ERROR:
        break;
    default:
        return -1;  /* a command, or no frame type at all */
    }
    if (frame->body_len < SIGFUSE_REPLY_PREFIX_BYTES)
        return -1;
    reply->kind = frame->type;
    reply->seq = frame->seq;
    reply->cmd_type = frame->body[0];
    reply->cmd_seq = frame->body[1];
    reply->status = reply->error = 0;
    reply->detail = 0;
    reply->data_len = reply->n_registers = reply->n_results = 0;
    rest_len = frame->body_len - SIGFUSE_REPLY_PREFIX_BYTES;
    switch (frame->type) {
    case SIGFUSE_FRAME_REG_WRITE_ACK: case SIGFUSE_FRAME_PUSH_ACK: case SIGFUSE_FRAME_POP_ACK:
        if (rest_len != 1 || rest[0] > SIGFUSE_ACK_DUPLICATE)
            return -1;
        reply->status = rest[0];
        return 0;
    case SIGFUSE_FRAME_PONG:
        reply->data_len = (uint8_t)rest_len;
        memcpy(reply->data, rest, rest_len);
        return 0;
    case SIGFUSE_FRAME_REG_READ_REPLY: case SIGFUSE_FRAME_STATS_REPLY:
        if (rest_len % SIGFUSE_REG_ACCESS_BYTES)
            return -1;
        reply->n_registers = (uint8_t)(rest_len / SIGFUSE_REG_ACCESS_BYTES);
        for (i = 0; i < reply->n_registers; i++) {
            reply->reg_addr[i] = (uint16_t)get_le(rest + SIGFUSE_REG_ACCESS_BYTES * i, 2);
            reply->reg_value[i] = get_le(rest + SIGFUSE_REG_ACCESS_BYTES * i + 2, 4);
        }
        return 0;
    case SIGFUSE_FRAME_RESULTS:
        if (rest_len == 0 || rest_len % SIGFUSE_RESULT_RECORD_BYTES)
            return -1;
        reply->n_results = (uint8_t)(rest_len / SIGFUSE_RESULT_RECORD_BYTES);
        for (i = 0; i < reply->n_results; i++)
            if (sigfuse_unpack_result(rest + SIGFUSE_RESULT_RECORD_BYTES * i, &reply->results[i]) != 0)
                return -1;
        return 0;
    default: /* ERROR */
        if (rest_len != 3)
            return -1;
        reply->error = rest[0];
        reply->detail = (uint16_t)get_le(rest + 1, 2);
        return 0;
    }
}

int sigfuse_reply_is_terminal(const struct sigfuse_reply *reply)
{
    return reply->kind != SIGFUSE_FRAME_RESULTS;
}

/* --- registers -------------------------------------------------------------------------- */

const struct sigfuse_reg_info *sigfuse_reg_at(size_t index)
{
    return index < SIGFUSE_REG_COUNT ? &sigfuse_reg_table()[index] : NULL;
}

const struct sigfuse_reg_info *sigfuse_reg_by_name(const char *name)
{
    size_t i;
    const struct sigfuse_reg_info *table = sigfuse_reg_table();
    for (i = 0; i < SIGFUSE_REG_COUNT; i++)
        if (strcmp(table[i].name, name) == 0)
            return &table[i];
    return NULL;
}

const struct sigfuse_reg_info *sigfuse_reg_by_addr(uint16_t addr)
{
    size_t lo = 0, hi = SIGFUSE_REG_COUNT;
    const struct sigfuse_reg_info *table = sigfuse_reg_table();
    while (lo < hi) {  /* the table is sorted by address */
        size_t mid = lo + (hi - lo) / 2;
        if (table[mid].addr == addr)
            return &table[mid];
        if (table[mid].addr < addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}
