//! A training step allocates nothing of its own after warm-up: activations, gradients and
//! optimizer state are sized once. The only heap traffic left is matrixmultiply's packing
//! buffer, one allocation per sgemm call, freed before the call returns.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

use npk::train::{Mlp, OptimizerKind, Trainer, rng::Rng};

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
fn steps_allocate_only_gemm_packing_buffers() {
    let (inputs, classes, max_batch) = (10, 4, 8);
    let mut rng = Rng::new(3);
    for optimizer in [OptimizerKind::Adam, OptimizerKind::Sgd] {
        let mlp = Mlp::new(inputs, &[16, 12], classes, &mut rng);
        let layers = mlp.layers.len();
        let mut trainer = Trainer::new(mlp.clone(), optimizer.build(&mlp, 0.01), max_batch);
        let x: Vec<f32> = (0..max_batch * inputs)
            .map(|_| rng.normal() as f32)
            .collect();
        let labels: Vec<u32> = (0..max_batch as u32).map(|i| i % classes as u32).collect();
        trainer.step(&x, &labels);
        // Forward: one GEMM per layer; backward: the weight gradient per layer and the input
        // gradient of every layer but the first.
        let gemms = 3 * layers - 1;
        for batch in [max_batch, 3, 1, max_batch] {
            let n = allocations_during(|| {
                trainer.step(&x[..batch * inputs], &labels[..batch]);
            });
            assert_eq!(n, gemms, "{optimizer}, batch {batch}");
        }
    }
}
