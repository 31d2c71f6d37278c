#version 450
// y = alpha * x + y over vec4s: the memory-bound kernel (12 bytes moved per float).
// A 2-D dispatch covers more than 65,535 workgroups.
layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer VecX { vec4 x[]; };
layout(std430, binding = 1) buffer VecY { vec4 y[]; };
layout(push_constant) uniform Args { uint count; float alpha; } p;

void main() {
    uint i = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 256;
    if (i < p.count) {
        y[i] = p.alpha * x[i] + y[i];
    }
}
