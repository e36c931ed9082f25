//! A training step allocates nothing after warm-up: activations, gradients and optimizer state
//! are sized once and the matrix products need no packing buffers. Prediction neither.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

use npk::{
    rng::Rng,
    train::{Mlp, OptimizerKind, Trainer},
};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counter is a const-initialized thread local
// without a destructor, so touching it cannot allocate or recurse.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn steps_and_predictions_allocate_nothing() {
    let (inputs, classes, max_batch) = (10, 4, 8);
    let mut rng = Rng::new(3);
    for optimizer in [OptimizerKind::Adam, OptimizerKind::Sgd] {
        let mlp = Mlp::new(inputs, &[16, 12], classes, &mut rng);
        let mut trainer = Trainer::new(mlp.clone(), optimizer.build(&mlp, 0.01), max_batch);
        let x: Vec<f32> = (0..max_batch * inputs)
            .map(|_| rng.normal() as f32)
            .collect();
        let labels: Vec<u32> = (0..max_batch as u32).map(|i| i % classes as u32).collect();
        trainer.step(&x, &labels);
        for batch in [max_batch, 3, 1, max_batch] {
            let n = allocations_during(|| {
                trainer.step(&x[..batch * inputs], &labels[..batch]);
            });
            assert_eq!(n, 0, "{optimizer}, batch {batch}");
            let mut out = vec![0; batch];
            let n = allocations_during(|| trainer.predict(&x[..batch * inputs], &mut out));
            assert_eq!(n, 0, "predict, batch {batch}");
        }
    }
}
