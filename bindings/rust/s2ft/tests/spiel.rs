//! SpIEL schedules and LIFT's mask refresh through the safe API: a small
//! training loop on a random 12 x 10 weight with 20 random trained entries.

mod common;

use common::Rng;
use s2ft::*;

const ROWS: usize = 12;
const COLS: usize = 10;
const K: usize = 20;

/// 20 distinct random flat indices of a 12 x 10 weight, ascending.
fn random_entries(rng: &mut Rng) -> Vec<i64> {
    let mut all: Vec<i64> = (0..(ROWS * COLS) as i64).collect();
    for i in (1..all.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        all.swap(i, j);
    }
    let mut idx = all[..K].to_vec();
    idx.sort_unstable();
    idx
}

/// True when `w` equals `w0` bit for bit outside the flat `indices`.
fn changed_only_at(w: &[f32], w0: &[f32], indices: &[i64]) -> bool {
    (0..w.len()).all(|i| indices.contains(&(i as i64)) || w[i].to_bits() == w0[i].to_bits())
}

/// `steps` training steps on random x, dy; returns the current set and the
/// steps after which it moved.
fn train<'c>(ctx: &'c Context, rng: &mut Rng, spiel: &mut Spiel<'c>, opt: &mut Optimizer<'_>, mut set: SparseSet<'c>, steps: usize) -> (SparseSet<'c>, Vec<usize>) {
    let mut moved_at = Vec::new();
    for t in 1..=steps {
        let (x, dy) = (rng.vec(8 * COLS), rng.vec(8 * ROWS));
        let (x, dy) = (TensorRef::matrix(&x, 8, COLS).unwrap(), TensorRef::matrix(&dy, 8, ROWS).unwrap());
        let n = set.count().unwrap();
        let mut g = vec![0.0f32; n];
        backward_sparse(ctx, &set, &x, &dy, None, None, &mut TensorMut::new(&mut g, &[n]).unwrap(), Accumulate::default()).unwrap();
        spiel.observe(ctx, opt, &x, &dy).unwrap();
        opt.step(0.05, &[TensorRef::new(&g, &[n]).unwrap()]).unwrap();
        if spiel.step(ctx, opt).unwrap() {
            moved_at.push(t);
            set = spiel.current_set(ctx).unwrap();
        }
    }
    (set, moved_at)
}

#[test]
fn spiel_ag_moves_the_entries_and_resets_the_dropped_ones() {
    let ctx = Context::new().unwrap();
    let mut rng = Rng::new(7);
    let mut w = rng.vec(ROWS * COLS);
    let w0 = w.clone();
    let first = random_entries(&mut rng);
    let set = SparseSet::new(&ctx, ROWS, COLS, &first).unwrap();
    let current;
    {
        let mut opt = Optimizer::new(&ctx, &OptimizerOptions::default()).unwrap();
        let index = opt.add_sparse(TensorMut::matrix(&mut w, ROWS, COLS).unwrap(), &set).unwrap();
        let opts = SpielOptions { reselect_interval: 4, accumulation_steps: 2, ..SpielOptions::new(12) };
        let mut spiel = Spiel::new(&ctx, &opt, index, &opts).unwrap();
        assert_eq!((spiel.param_index(), spiel.options().total_steps), (0, 12));
        let (set, moved_at) = train(&ctx, &mut rng, &mut spiel, &mut opt, set, 7);
        // Reselections after steps M + j N = 2, 6; the first replaces everything (first_full).
        assert_eq!(moved_at.first(), Some(&2));
        assert!(moved_at.iter().all(|t| *t == 2 || *t == 6), "{moved_at:?}");
        let st = spiel.stats().unwrap();
        assert_eq!((st.steps, st.count, st.reselections, st.next_reselection, st.last_step), (7, K as i64, 2, 10, 6));
        assert_eq!((st.dense_gradients, st.observations), (2, 4)); // one dense dW per window of 2 observations
        assert!((st.last_rate - 0.2 * (1.0 - 6.0 / 12.0)).abs() < 1e-12);
        assert_eq!(st.last_target, 2);
        assert!(st.last_dropped == st.last_regrown && st.last_dropped <= 2);
        current = set.indices().unwrap();
        assert_eq!(current.len(), K);
        assert_ne!(current, first);
        assert_eq!(spiel.current_set(&ctx).unwrap().indices().unwrap(), current);
        for t in [1usize, 3, 5, 9, 12] {
            assert!((spiel.rate(t).unwrap() - 0.2 * (1.0 - t as f64 / 12.0)).abs() < 1e-12, "rate({t})");
        }
        assert_eq!((spiel.rate(2).unwrap(), spiel.rate(13).unwrap()), (1.0, 0.0));
        let cosine = SpielOptions { decay: SpielDecay::Cosine, first_full: false, initial_rate: 0.5, ..opts };
        assert!((cosine.rate(2).unwrap() - 0.5 * (1.0 + (std::f64::consts::PI * 2.0 / 12.0).cos()) / 2.0).abs() < 1e-12);
    }
    // Dropped entries are back at their base values: the weight moved at the current entries only.
    assert!(changed_only_at(&w, &w0, &current));
    assert_ne!(w, w0);
}

#[test]
fn spiel_ma_with_activation_sums() {
    let ctx = Context::new().unwrap();
    let mut rng = Rng::new(11);
    let mut w = rng.vec(ROWS * COLS);
    let w0 = w.clone();
    let set = SparseSet::new(&ctx, ROWS, COLS, &random_entries(&mut rng)).unwrap();
    let current;
    {
        let mut opt = Optimizer::new(&ctx, &OptimizerOptions::default()).unwrap();
        let index = opt.add_sparse(TensorMut::matrix(&mut w, ROWS, COLS).unwrap(), &set).unwrap();
        let opts = SpielOptions {
            regrow: SpielRegrow::Ma,
            ma_source: SpielMaSource::Activations,
            reselect_interval: 4,
            accumulation_steps: 2,
            first_full: false,
            initial_rate: 0.5,
            ..SpielOptions::new(12)
        };
        let mut spiel = Spiel::new(&ctx, &opt, index, &opts).unwrap();
        let (set, moved_at) = train(&ctx, &mut rng, &mut spiel, &mut opt, set, 6);
        let st = spiel.stats().unwrap();
        assert_eq!((st.steps, st.reselections, st.dense_gradients, st.count), (6, 2, 0, K as i64)); // no dense dW
        assert_eq!(st.last_target, (0.5f64 * (1.0 - 6.0 / 12.0) * K as f64).floor() as i64);
        assert!(!moved_at.is_empty() && moved_at.iter().all(|t| *t == 2 || *t == 6), "{moved_at:?}");
        current = set.indices().unwrap();
        assert_eq!(current.len(), K);
    }
    assert!(changed_only_at(&w, &w0, &current));
}

#[test]
fn spiel_errors_carry_the_status_and_message() {
    let ctx = Context::new().unwrap();
    let mut rng = Rng::new(3);
    let mut w = rng.vec(ROWS * COLS);
    let set = SparseSet::new(&ctx, ROWS, COLS, &random_entries(&mut rng)).unwrap();
    let mut opt = Optimizer::new(&ctx, &OptimizerOptions::default()).unwrap();
    let index = opt.add_sparse(TensorMut::matrix(&mut w, ROWS, COLS).unwrap(), &set).unwrap();

    let e = Spiel::new(&ctx, &opt, index, &SpielOptions::default()).unwrap_err(); // total_steps 0
    assert_eq!((e.kind(), e.status), (ErrorKind::InvalidArgument, -1));
    assert!(e.message.contains("total_steps"), "{e}");
    let bad = SpielOptions { reselect_interval: 4, accumulation_steps: 5, ..SpielOptions::new(12) };
    assert!(Spiel::new(&ctx, &opt, index, &bad).unwrap_err().message.contains("accumulation_steps"));
    let ma = SpielOptions { regrow: SpielRegrow::Ma, ..SpielOptions::new(12) }; // the SM3 source on AdamW
    assert!(Spiel::new(&ctx, &opt, index, &ma).unwrap_err().message.contains("SM3"));
    assert_eq!(Spiel::new(&ctx, &opt, 1, &SpielOptions::new(12)).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(SpielOptions::new(12).rate(0).unwrap_err().kind(), ErrorKind::InvalidArgument);

    let mut spiel = Spiel::new(&ctx, &opt, index, &SpielOptions::new(12)).unwrap();
    let (x, dy) = (vec![0.0f32; 3 * (COLS + 1)], vec![0.0f32; 3 * ROWS]);
    let e = spiel.observe(&ctx, &opt, &TensorRef::matrix(&x, 3, COLS + 1).unwrap(), &TensorRef::matrix(&dy, 3, ROWS).unwrap()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Shape);
    // Another optimizer is refused before the call.
    let mut other = Optimizer::new(&ctx, &OptimizerOptions::default()).unwrap();
    assert_eq!(spiel.step(&ctx, &mut other).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert!(!spiel.step(&ctx, &mut opt).unwrap()); // step 1 of 12, before the first reselection
}

#[test]
fn lift_refresh_moves_the_parameter_to_the_principal_weights() {
    let ctx = Context::new().unwrap();
    let mut rng = Rng::new(5);
    let mut w = rng.vec(ROWS * COLS);
    let old = random_entries(&mut rng);
    let set = SparseSet::new(&ctx, ROWS, COLS, &old).unwrap();
    let mut opt = Optimizer::new(&ctx, &OptimizerOptions::default()).unwrap();
    let index = opt.add_sparse(TensorMut::matrix(&mut w, ROWS, COLS).unwrap(), &set).unwrap();
    let ones = vec![1.0f32; K];
    opt.step(0.05, &[TensorRef::new(&ones, &[K]).unwrap()]).unwrap();
    let lo = LiftOptions::new(2, LiftBudget::Count(K));
    let (fresh, kept) = match lift_refresh(&ctx, &mut opt, index, &lo) {
        Ok(r) => r,
        Err(e) if e.kind() == ErrorKind::Unsupported => return, // a build without LAPACK
        Err(e) => panic!("{e}"),
    };
    let idx = fresh.indices().unwrap();
    assert_eq!((idx.len(), fresh.shape().unwrap()), (K, (ROWS, COLS)));
    assert_eq!(idx, lift_select(&ctx, &opt.weight(index).unwrap(), &lo).unwrap());
    assert_eq!(kept, idx.iter().filter(|i| old.contains(i)).count());
    let before = opt.weight(index).unwrap().to_f32_vec().unwrap();
    opt.step(0.05, &[TensorRef::new(&ones, &[K]).unwrap()]).unwrap(); // the new set's entries move
    let after = opt.weight(index).unwrap().to_f32_vec().unwrap();
    assert!(changed_only_at(&after, &before, &idx));

    let dense = LiftOptions { budget: LiftBudget::Density(0.5), ..lo };
    let (half, _) = lift_refresh(&ctx, &mut opt, index, &dense).unwrap();
    assert_eq!(half.count().unwrap(), ROWS * COLS / 2);
    let e = lift_refresh(&ctx, &mut opt, 3, &lo).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let e = lift_refresh(&ctx, &mut opt, index, &LiftOptions::new(0, LiftBudget::Count(K))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.message.contains("rank"), "{e}");
}
