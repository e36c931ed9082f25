//! Training hot path: one optimizer step (forward, backward, update) at the shapes the
//! accuracy targets use, and a whole one-epoch `train` call on digits (model init included).
//! Compare with bench/mlp_numpy.py.

use std::{hint::black_box, path::Path};

use criterion::{Criterion, criterion_group, criterion_main};
use npk::{
    dataset::{Dataset, Standardizer},
    train::{self, Mlp, OptimizerKind, TrainConfig, Trainer, rng::Rng},
};

fn standardized(name: &str) -> Dataset {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(name);
    let data = Dataset::load_csv(&path).expect("shipped dataset loads");
    Standardizer::fit(&data).apply(&data)
}

fn steps(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_step");
    for (name, file, hidden, batch) in [
        ("iris_16_16_b16", "iris.csv", &[16, 16][..], 16),
        ("digits_64_32_b32", "digits.csv", &[64, 32][..], 32),
    ] {
        let data = standardized(file);
        for optimizer in [OptimizerKind::Adam, OptimizerKind::Sgd] {
            let mlp = Mlp::new(
                data.num_features,
                hidden,
                data.num_classes,
                &mut Rng::new(1),
            );
            let mut trainer = Trainer::new(mlp.clone(), optimizer.build(&mlp, 0.01), batch);
            let x = &data.features[..batch * data.num_features];
            let y = &data.labels[..batch];
            group.bench_function(format!("{name}_{optimizer}"), |b| {
                b.iter(|| trainer.step(black_box(x), black_box(y)))
            });
        }
    }
    group.finish();
}

fn epoch(c: &mut Criterion) {
    let data = standardized("digits.csv");
    let config = TrainConfig {
        hidden: vec![64, 32],
        epochs: 1,
        batch: 32,
        optimizer: OptimizerKind::Adam,
        lr: 0.01,
        seed: 1,
    };
    c.bench_function("train_epoch/digits_64_32_b32_adam", |b| {
        b.iter(|| train::train(black_box(&data), &config, |_| {}).expect("valid config"))
    });
}

criterion_group!(benches, steps, epoch);
criterion_main!(benches);
