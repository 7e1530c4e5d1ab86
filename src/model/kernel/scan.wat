;; The int8 first stage of an item shard's top-k (src/model/int8-scan.ts, which explains the bounds):
;; exact integer dot products of int8 rows with an int16 query, four rows at a time with WebAssembly
;; SIMD, each row's interval [lo, hi] around its float32 score, and the k-th largest lo, in one pass
;; over the rows; then the rows whose hi reaches it. Built into scan.wasm by `npm run build:kernel`
;; (the npm package wabt); test/node/int8-scan.test.ts checks that the committed scan.wasm is this
;; file's build.
(module
  (memory (export "memory") 1)

  ;; One pass over n rows (a multiple of 4; the rows past the shard's are zero codes, masked):
  ;;   D   = sum_c rows[r * stride + c] * q[c]   (int8 rows of `stride` bytes, a multiple of 16, zero
  ;;         past the dim; q as `stride` int16; exact: |row| <= 127, |q| <= 32767, dim <= 512)
  ;;   est = scale * D * step, then + bias (scores) or * inv (cosines: `similar` 1)
  ;;   w   = width * qn (* inv for cosines), widened by `grow` of w + |est| + |bias|
  ;;   lo, hi = est -/+ w, or -inf for a row whose `mask` bit is 1
  ;; (scale, width, bias, inv: float32 a row at their offsets). Writes hi (float32 a row at $hi);
  ;; keeps the k largest lo in a min-heap of k float32 at $heap, four rows skipped at once when none
  ;; beats its least. Returns the k-th largest lo, or -inf when fewer than k rows are left.
  (func (export "scan") (param $q i32) (param $rows i32) (param $n i32) (param $stride i32)
    (param $scale i32) (param $width i32) (param $bias i32) (param $inv i32) (param $mask i32)
    (param $step f32) (param $qn f32) (param $grow f32) (param $similar i32)
    (param $hi i32) (param $heap i32) (param $k i32) (result f32)
    (local $r i32) (local $p i32) (local $c i32) (local $o i32) (local $x v128) (local $qa v128) (local $qb v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local $s1 i32) (local $s2 i32) (local $s3 i32)
    (local $est v128) (local $w v128) (local $b v128) (local $m v128) (local $lo v128)
    (local $size i32) (local $least f32)
    (local.set $least (f32.const -inf))
    (local.set $s1 (local.get $stride))
    (local.set $s2 (i32.shl (local.get $stride) (i32.const 1)))
    (local.set $s3 (i32.add (local.get $s2) (local.get $stride)))
    (local.set $p (local.get $rows))
    (block $done (loop $rows4
      (br_if $done (i32.ge_u (local.get $r) (local.get $n)))
      (local.set $a0 (v128.const i32x4 0 0 0 0))
      (local.set $a1 (v128.const i32x4 0 0 0 0))
      (local.set $a2 (v128.const i32x4 0 0 0 0))
      (local.set $a3 (v128.const i32x4 0 0 0 0))
      (local.set $c (i32.const 0))
      (block $cols_done (loop $cols
        (br_if $cols_done (i32.ge_u (local.get $c) (local.get $stride)))
        (local.set $qa (v128.load (i32.add (local.get $q) (i32.shl (local.get $c) (i32.const 1)))))
        (local.set $qb (v128.load offset=16 (i32.add (local.get $q) (i32.shl (local.get $c) (i32.const 1)))))
        (local.set $x (v128.load (i32.add (local.get $p) (local.get $c))))
        (local.set $a0 (i32x4.add (local.get $a0) (i32x4.add
          (i32x4.dot_i16x8_s (i16x8.extend_low_i8x16_s (local.get $x)) (local.get $qa))
          (i32x4.dot_i16x8_s (i16x8.extend_high_i8x16_s (local.get $x)) (local.get $qb)))))
        (local.set $x (v128.load (i32.add (i32.add (local.get $p) (local.get $s1)) (local.get $c))))
        (local.set $a1 (i32x4.add (local.get $a1) (i32x4.add
          (i32x4.dot_i16x8_s (i16x8.extend_low_i8x16_s (local.get $x)) (local.get $qa))
          (i32x4.dot_i16x8_s (i16x8.extend_high_i8x16_s (local.get $x)) (local.get $qb)))))
        (local.set $x (v128.load (i32.add (i32.add (local.get $p) (local.get $s2)) (local.get $c))))
        (local.set $a2 (i32x4.add (local.get $a2) (i32x4.add
          (i32x4.dot_i16x8_s (i16x8.extend_low_i8x16_s (local.get $x)) (local.get $qa))
          (i32x4.dot_i16x8_s (i16x8.extend_high_i8x16_s (local.get $x)) (local.get $qb)))))
        (local.set $x (v128.load (i32.add (i32.add (local.get $p) (local.get $s3)) (local.get $c))))
        (local.set $a3 (i32x4.add (local.get $a3) (i32x4.add
          (i32x4.dot_i16x8_s (i16x8.extend_low_i8x16_s (local.get $x)) (local.get $qa))
          (i32x4.dot_i16x8_s (i16x8.extend_high_i8x16_s (local.get $x)) (local.get $qb)))))
        (local.set $c (i32.add (local.get $c) (i32.const 16)))
        (br $cols)))
      ;; lane j: row r + j's D
      (local.set $a0 (i32x4.add
        (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $a0) (local.get $a1))
        (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $a0) (local.get $a1))))
      (local.set $a2 (i32x4.add
        (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $a2) (local.get $a3))
        (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $a2) (local.get $a3))))
      (local.set $a0 (i32x4.add
        (i8x16.shuffle 0 1 2 3 8 9 10 11 16 17 18 19 24 25 26 27 (local.get $a0) (local.get $a2))
        (i8x16.shuffle 4 5 6 7 12 13 14 15 20 21 22 23 28 29 30 31 (local.get $a0) (local.get $a2))))
      ;; the four rows' intervals
      (local.set $o (i32.shl (local.get $r) (i32.const 2)))
      (local.set $est (f32x4.mul (f32x4.mul (v128.load (i32.add (local.get $scale) (local.get $o)))
        (f32x4.convert_i32x4_s (local.get $a0))) (f32x4.splat (local.get $step))))
      (local.set $w (f32x4.mul (v128.load (i32.add (local.get $width) (local.get $o))) (f32x4.splat (local.get $qn))))
      (if (local.get $similar)
        (then
          (local.set $b (v128.load (i32.add (local.get $inv) (local.get $o))))
          (local.set $est (f32x4.mul (local.get $est) (local.get $b)))
          (local.set $w (f32x4.mul (local.get $w) (local.get $b)))
          (local.set $w (f32x4.add (local.get $w) (f32x4.mul (f32x4.add (local.get $w) (f32x4.abs (local.get $est))) (f32x4.splat (local.get $grow))))))
        (else
          (local.set $b (v128.load (i32.add (local.get $bias) (local.get $o))))
          (local.set $w (f32x4.add (local.get $w) (f32x4.mul (f32x4.add (f32x4.add (local.get $w) (f32x4.abs (local.get $est))) (f32x4.abs (local.get $b))) (f32x4.splat (local.get $grow)))))
          (local.set $est (f32x4.add (local.get $est) (local.get $b)))))
      ;; their mask bits: a nibble of the mask's byte r / 8
      (local.set $m (i32x4.ne (v128.and
        (i32x4.splat (i32.shr_u (i32.load8_u (i32.add (local.get $mask) (i32.shr_u (local.get $r) (i32.const 3))))
          (i32.and (local.get $r) (i32.const 4))))
        (v128.const i32x4 1 2 4 8)) (v128.const i32x4 0 0 0 0)))
      (v128.store (i32.add (local.get $hi) (local.get $o))
        (v128.bitselect (f32x4.splat (f32.const -inf)) (f32x4.add (local.get $est) (local.get $w)) (local.get $m)))
      (local.set $lo (v128.bitselect (f32x4.splat (f32.const -inf)) (f32x4.sub (local.get $est) (local.get $w)) (local.get $m)))
      (if (v128.any_true (f32x4.gt (local.get $lo) (f32x4.splat (local.get $least))))
        (then
          (local.set $size (call $offer (local.get $heap) (local.get $size) (local.get $k) (f32x4.extract_lane 0 (local.get $lo))))
          (local.set $size (call $offer (local.get $heap) (local.get $size) (local.get $k) (f32x4.extract_lane 1 (local.get $lo))))
          (local.set $size (call $offer (local.get $heap) (local.get $size) (local.get $k) (f32x4.extract_lane 2 (local.get $lo))))
          (local.set $size (call $offer (local.get $heap) (local.get $size) (local.get $k) (f32x4.extract_lane 3 (local.get $lo))))
          (if (i32.eq (local.get $size) (local.get $k)) (then (local.set $least (f32.load (local.get $heap)))))))
      (local.set $p (i32.add (local.get $p) (i32.shl (local.get $stride) (i32.const 2))))
      (local.set $r (i32.add (local.get $r) (i32.const 4)))
      (br $rows4)))
    (if (result f32) (i32.and (i32.eq (local.get $size) (local.get $k)) (i32.gt_u (local.get $k) (i32.const 0)))
      (then (f32.load (local.get $heap))) (else (f32.const -inf)))
  )

  ;; Offer $x to a min-heap of $size (at most $k) float32 values; returns the new size.
  (func $offer (param $heap i32) (param $size i32) (param $k i32) (param $x f32) (result i32)
    (local $i i32) (local $p i32) (local $c i32) (local $y f32)
    (if (f32.eq (local.get $x) (f32.const -inf)) (then (return (local.get $size))))
    (if (i32.lt_u (local.get $size) (local.get $k))
      (then
        ;; sift up from the new last slot
        (local.set $i (local.get $size))
        (block $up_done (loop $up
          (br_if $up_done (i32.eqz (local.get $i)))
          (local.set $p (i32.shr_u (i32.sub (local.get $i) (i32.const 1)) (i32.const 1)))
          (local.set $y (f32.load (i32.add (local.get $heap) (i32.shl (local.get $p) (i32.const 2)))))
          (br_if $up_done (f32.le (local.get $y) (local.get $x)))
          (f32.store (i32.add (local.get $heap) (i32.shl (local.get $i) (i32.const 2))) (local.get $y))
          (local.set $i (local.get $p))
          (br $up)))
        (f32.store (i32.add (local.get $heap) (i32.shl (local.get $i) (i32.const 2))) (local.get $x))
        (return (i32.add (local.get $size) (i32.const 1)))))
    (if (i32.eqz (local.get $k)) (then (return (local.get $size))))
    (if (i32.eqz (f32.gt (local.get $x) (f32.load (local.get $heap)))) (then (return (local.get $size))))
    ;; replace the least: sift down from the root
    (block $down_done (loop $down
      (local.set $c (i32.add (i32.shl (local.get $i) (i32.const 1)) (i32.const 1)))
      (br_if $down_done (i32.ge_u (local.get $c) (local.get $size)))
      (if (i32.lt_u (i32.add (local.get $c) (i32.const 1)) (local.get $size))
        (then (if (f32.lt (f32.load (i32.add (local.get $heap) (i32.shl (i32.add (local.get $c) (i32.const 1)) (i32.const 2))))
                          (f32.load (i32.add (local.get $heap) (i32.shl (local.get $c) (i32.const 2)))))
          (then (local.set $c (i32.add (local.get $c) (i32.const 1)))))))
      (local.set $y (f32.load (i32.add (local.get $heap) (i32.shl (local.get $c) (i32.const 2)))))
      (br_if $down_done (f32.ge (local.get $y) (local.get $x)))
      (f32.store (i32.add (local.get $heap) (i32.shl (local.get $i) (i32.const 2))) (local.get $y))
      (local.set $i (local.get $c))
      (br $down)))
    (f32.store (i32.add (local.get $heap) (i32.shl (local.get $i) (i32.const 2))) (local.get $x))
    (local.get $size)
  )

  ;; The rows (0-based, int32, ascending, at $out) of the n (a multiple of 4) values at $hi that are
  ;; at least $tau and finite; returns how many.
  (func (export "collect") (param $hi i32) (param $n i32) (param $tau f32) (param $out i32) (result i32)
    (local $i i32) (local $end i32) (local $bits i32) (local $count i32) (local $vt v128)
    (local.set $vt (f32x4.splat (local.get $tau)))
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
      (local.set $bits (i32x4.bitmask (v128.and
        (f32x4.ge (v128.load (i32.add (local.get $hi) (local.get $i))) (local.get $vt))
        (f32x4.gt (v128.load (i32.add (local.get $hi) (local.get $i))) (f32x4.splat (f32.const -inf))))))
      (block $lanes_done (loop $lanes
        (br_if $lanes_done (i32.eqz (local.get $bits)))
        (i32.store (i32.add (local.get $out) (i32.shl (local.get $count) (i32.const 2)))
          (i32.add (i32.shr_u (local.get $i) (i32.const 2)) (i32.ctz (local.get $bits))))
        (local.set $count (i32.add (local.get $count) (i32.const 1)))
        (local.set $bits (i32.and (local.get $bits) (i32.sub (local.get $bits) (i32.const 1))))
        (br $lanes)))
      (local.set $i (i32.add (local.get $i) (i32.const 16)))
      (br $next)))
    (local.get $count)
  )
)
