// deeplinear C++ core: everything in one include, except compressed completion (completion.hpp,
// sparse.hpp, threads.hpp), which only bind_completion.cpp includes (a change there rebuilds one
// translation unit, not every binding).
#pragma once
#include "deeplinear/bulk.hpp"
#include "deeplinear/activation.hpp"
#include "deeplinear/init.hpp"
#include "deeplinear/network.hpp"
#include "deeplinear/objective.hpp"
#include "deeplinear/optimizer.hpp"
#include "deeplinear/rng.hpp"
#include "deeplinear/subspace.hpp"
#include "deeplinear/trainer.hpp"
#include "deeplinear/types.hpp"
#include "deeplinear/tracking.hpp"
