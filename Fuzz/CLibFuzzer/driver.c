// The declaration of libFuzzer's driver is all this module holds (include/CLibFuzzer.h); a C target needs a source.
#include "CLibFuzzer.h"
