#version 450
// C = A x B, fp32, row-major. 64x64 tile per workgroup of 16x16 threads; each thread keeps a
// 4x4 block of C in registers. Edges are padded with zeros, so any M, N, K work.
layout(local_size_x = 16, local_size_y = 16) in;
layout(std430, binding = 0) readonly buffer MatA { float a[]; };
layout(std430, binding = 1) readonly buffer MatB { float b[]; };
layout(std430, binding = 2) writeonly buffer MatC { float c[]; };
layout(push_constant) uniform Sizes { uint M; uint N; uint K; } p;

const uint TILE = 64;
const uint TK = 16;
shared float As[TK][TILE];
shared float Bs[TK][TILE];

void main() {
    uint tx = gl_LocalInvocationID.x;
    uint ty = gl_LocalInvocationID.y;
    uint tid = ty * 16 + tx;
    uint row0 = gl_WorkGroupID.y * TILE;
    uint col0 = gl_WorkGroupID.x * TILE;
    float acc[4][4];
    for (uint i = 0; i < 4; i++) {
        for (uint j = 0; j < 4; j++) {
            acc[i][j] = 0.0;
        }
    }
    for (uint k0 = 0; k0 < p.K; k0 += TK) {
        for (uint l = 0; l < 4; l++) {
            uint idx = tid + l * 256;
            uint r = idx / TK;
            uint ka = idx % TK;
            uint gr = row0 + r;
            uint gk = k0 + ka;
            As[ka][r] = (gr < p.M && gk < p.K) ? a[gr * p.K + gk] : 0.0;
            uint kb = idx / TILE;
            uint cb = idx % TILE;
            uint gkb = k0 + kb;
            uint gc = col0 + cb;
            Bs[kb][cb] = (gkb < p.K && gc < p.N) ? b[gkb * p.N + gc] : 0.0;
        }
        barrier();
        for (uint kk = 0; kk < TK; kk++) {
            float ar[4];
            float br[4];
            for (uint i = 0; i < 4; i++) {
                ar[i] = As[kk][ty + 16 * i];
                br[i] = Bs[kk][tx + 16 * i];
            }
            for (uint i = 0; i < 4; i++) {
                for (uint j = 0; j < 4; j++) {
                    acc[i][j] += ar[i] * br[j];
                }
            }
        }
        barrier();
    }
    for (uint i = 0; i < 4; i++) {
        uint r = row0 + ty + 16 * i;
        for (uint j = 0; j < 4; j++) {
            uint col = col0 + tx + 16 * j;
            if (r < p.M && col < p.N) {
                c[r * p.N + col] = acc[i][j];
            }
        }
    }
}
