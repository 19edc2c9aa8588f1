#ifndef CLIBFUZZER_H
#define CLIBFUZZER_H

#include <stddef.h>
#include <stdint.h>

/// libFuzzer's driver (compiler-rt, linked by -sanitize=fuzzer): parses libFuzzer's flags from argv and fuzzes
/// `callback` until done. Declared here, and called only in the instrumented build (CONNVAULT_LIBFUZZER): SwiftPM
/// links an executable's `main` to the module's own entry point, so libFuzzer's `main` is never the one that runs.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
