fn main() -> anyhow::Result<()> {
    let mut ebpf = npk::kernel::load_object()?;
    let prog: &mut aya::programs::Xdp = ebpf.program_mut("npk_classify").unwrap().try_into()?;
    prog.load()?;
    println!("loaded");
    Ok(())
}
