"""The benchmark of one session: the runtime built once, the paired reference/candidate run of a
case, memory probes, the allocator, injected regressions and the GPU policy."""
