// A small persistent thread pool for the core's own parallel loops (the BLAS build has no
// OpenMP runtime).
// The pool: run(f) calls f(t) for t = 0 .. size()-1 concurrently, t = 0 on the calling thread,
// and returns when all are done.  No allocation per call (the task is a function
// pointer and a context pointer).  Workers spin briefly after a task before they sleep on a
// condition variable: a training step calls run() once, so the next step usually finds them
// still awake (a condition-variable wake-up costs tens of microseconds, a 2%-observed step at
// d = 1000 about a hundred).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace deeplinear {

class ThreadPool {
 public:
  explicit ThreadPool(int threads) : n_(threads < 1 ? 1 : threads) {
    for (int t = 1; t < n_; ++t) workers_.emplace_back([this, t] { loop(t); });
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
      gen_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_; }

  /// f(t) for every t in [0, size()), concurrently; f must not throw.
  template <class F>
  void run(F& f) {
    if (n_ == 1) {
      f(0);
      return;
    }
    task_ = [](void* ctx, int t) { (*static_cast<F*>(ctx))(t); };
    ctx_ = &f;
    pending_.store(n_ - 1, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lk(m_);
      gen_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    f(0);
    for (long s = 0; s < kSpin && pending_.load(std::memory_order_acquire) != 0; ++s) pause();
    if (pending_.load(std::memory_order_acquire) != 0) {
      std::unique_lock<std::mutex> lk(m_);
      done_.wait(lk, [this] { return pending_.load(std::memory_order_acquire) == 0; });
    }
  }

 private:
  static constexpr long kSpin = 4000;  // ~10-40 us of pause instructions, then sleep

  static void pause() {
#if defined(__x86_64__) || defined(_M_X64)
    _mm_pause();
#endif
  }

  void loop(int t) {
    std::uint64_t seen = 0;
    for (;;) {
      std::uint64_t g = gen_.load(std::memory_order_acquire);
      for (long s = 0; s < kSpin && g == seen; ++s) {
        pause();
        g = gen_.load(std::memory_order_acquire);
      }
      if (g == seen) {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return gen_.load(std::memory_order_acquire) != seen; });
        g = gen_.load(std::memory_order_acquire);
      }
      seen = g;
      if (stop_) return;
      task_(ctx_, t);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lk(m_);
        done_.notify_one();
      }
    }
  }

  int n_;
  std::vector<std::thread> workers_;
  std::mutex m_;
  std::condition_variable cv_, done_;
  std::atomic<std::uint64_t> gen_{0};
  std::atomic<int> pending_{0};
  void (*task_)(void*, int) = nullptr;
  void* ctx_ = nullptr;
  bool stop_ = false;
};

}  // namespace deeplinear
