//! The CPU trainer and the GPU trainer take the same steps: same initial weights, batches and
//! optimizer, so losses and weights must agree to float32 rounding. Without a GPU the test
//! prints `skipped: <reason>` and passes.

use gpu_offload::{GpuTrainer, gpu_available};
use npk::{
    rng::Rng,
    train::{
        Mlp, OptimizerKind, Trainer,
        gpu::{from_gpu_layers, gpu_optimizer, to_gpu_layers},
    },
};

/// Relative, with an absolute floor for values near zero; f32 sums in different orders
/// (sgemm vs cuBLAS) differ by a few ulps per step, which Adam's division can magnify on
/// near-zero gradients, hence more room than one rounding.
const REL_TOL: f32 = 1e-3;
const ABS_TOL: f32 = 1e-4;

#[track_caller]
fn close(what: &str, cpu: f32, gpu: f32) {
    assert!(
        (cpu - gpu).abs() <= ABS_TOL + REL_TOL * cpu.abs(),
        "{what}: CPU {cpu}, GPU {gpu}"
    );
}

#[test]
fn cpu_and_gpu_steps_agree() {
    let name = match gpu_available() {
        Ok(name) => name,
        Err(e) => {
            println!("skipped: {e}");
            return;
        }
    };
    println!("comparing against {name}");
    let (inputs, classes, max_batch) = (20, 5, 64);
    for (hidden, optimizer, lr) in [
        (&[32, 16][..], OptimizerKind::Adam, 1e-2),
        (&[32, 16][..], OptimizerKind::Sgd, 5e-2),
        (&[300, 200][..], OptimizerKind::Adam, 1e-3),
    ] {
        let mut rng = Rng::new(7);
        let mlp = Mlp::new(inputs, hidden, classes, &mut rng);
        let mut cpu = Trainer::new(mlp.clone(), optimizer.build(&mlp, lr), max_batch);
        let mut gpu = GpuTrainer::new(
            &to_gpu_layers(&mlp),
            gpu_optimizer(optimizer, lr),
            max_batch,
        )
        .expect("GPU trainer");
        for (step, batch) in [64, 64, 17, 1, 64].into_iter().enumerate() {
            let x: Vec<f32> = (0..batch * inputs).map(|_| rng.normal() as f32).collect();
            let y: Vec<u32> = (0..batch).map(|_| rng.below(classes) as u32).collect();
            let cpu_loss = cpu.step(&x, &y).loss;
            let gpu_loss = gpu.step(&x, &y).expect("GPU step");
            let what = format!("{hidden:?} {optimizer} step {step} loss");
            close(&what, cpu_loss, gpu_loss);
        }
        let on_gpu = from_gpu_layers(gpu.download().expect("download"));
        for (l, (c, g)) in cpu.mlp().layers.iter().zip(&on_gpu.layers).enumerate() {
            for (i, (&a, &b)) in c.weights.iter().zip(&g.weights).enumerate() {
                close(&format!("{hidden:?} {optimizer} layer {l} w[{i}]"), a, b);
            }
            for (i, (&a, &b)) in c.bias.iter().zip(&g.bias).enumerate() {
                close(&format!("{hidden:?} {optimizer} layer {l} b[{i}]"), a, b);
            }
        }
        let x: Vec<f32> = (0..max_batch * inputs)
            .map(|_| rng.normal() as f32)
            .collect();
        let (mut cpu_pred, mut gpu_pred) = (vec![0; max_batch], vec![0; max_batch]);
        cpu.predict(&x, &mut cpu_pred);
        gpu.predict(&x, &mut gpu_pred).expect("GPU predict");
        let agree = cpu_pred
            .iter()
            .zip(&gpu_pred)
            .filter(|(a, b)| a == b)
            .count();
        // A tie within rounding may flip a row; more than one is a bug.
        assert!(
            agree + 1 >= max_batch,
            "{agree}/{max_batch} predictions agree"
        );
    }
}
