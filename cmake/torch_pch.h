// Precompiled header shared by every LibTorch translation unit (see LongsanaHelpers.cmake).
// Only ATen: <torch/torch.h> would double the cost for nothing we use.
#pragma once

#include <ATen/ATen.h>
