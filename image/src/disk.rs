//! The flashable disk image: a hybrid BIOS + UEFI GRUB image (grub-mkrescue) that boots the
//! guest ELF through `multiboot2` with GRUB on the serial console.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// Where the ELF sits inside the image.
pub const ELF_IN_IMAGE: &str = "/boot/ferrule.elf";

/// GRUB's configuration: no menu delay, console on COM1 (115200 8N1) and the screen, boot the
/// ELF with multiboot2.
pub const GRUB_CFG: &str = "\
serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1
terminal_input serial console
terminal_output serial console
set timeout=0
set default=0
menuentry \"Ferrule\" {
    multiboot2 /boot/ferrule.elf
    boot
}
";

/// Builds a disk image at `out` that boots `elf` under BIOS and UEFI, from a USB stick
/// (`dd`) or as a CD. Needs grub-mkrescue (grub-common), grub-pc-bin, grub-efi-amd64-bin,
/// xorriso and mtools.
pub fn make_disk_image(elf: &Path, out: &Path) -> Result<PathBuf, Error> {
    if !elf.is_file() {
        return Err(Error::Build(format!("{} does not exist", elf.display())));
    }
    for dir in ["/usr/lib/grub/i386-pc", "/usr/lib/grub/x86_64-efi"] {
        if !Path::new(dir).is_dir() {
            return Err(Error::Build(format!(
                "{dir} is missing: install grub-pc-bin and grub-efi-amd64-bin (`cargo ferrule test` does)"
            )));
        }
    }
    let staging = tempfile::Builder::new()
        .prefix("ferrule-image-")
        .tempdir()
        .map_err(|e| Error::Io("temporary directory".into(), e))?;
    let grub_dir = staging.path().join("boot").join("grub");
    std::fs::create_dir_all(&grub_dir).map_err(|e| Error::Io(grub_dir.display().to_string(), e))?;
    std::fs::write(grub_dir.join("grub.cfg"), GRUB_CFG)
        .map_err(|e| Error::Io("grub.cfg".into(), e))?;
    let target = staging.path().join(ELF_IN_IMAGE.trim_start_matches('/'));
    std::fs::copy(elf, &target).map_err(|e| Error::Io(elf.display().to_string(), e))?;
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::Io(parent.display().to_string(), e))?;
    }
    // Write next to the result and rename, so a failed run never leaves a half image behind.
    let partial = out.with_extension("img.partial");
    let output = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(&partial)
        // Only what a serial-console multiboot2 boot needs: smaller image, faster boot.
        .args(["--locales=", "--fonts=", "--themes=", "--compress=xz"])
        .arg(staging.path())
        .output()
        .map_err(|e| {
            Error::Tool(
                "grub-mkrescue (install grub-common, grub-pc-bin, grub-efi-amd64-bin, xorriso, mtools)"
                    .into(),
                e,
            )
        })?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&partial);
        return Err(Error::Build(format!(
            "grub-mkrescue failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    std::fs::rename(&partial, out).map_err(|e| Error::Io(out.display().to_string(), e))?;
    Ok(out.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_cfg_boots_the_elf_with_multiboot2_on_serial() {
        assert!(GRUB_CFG.contains(&format!("multiboot2 {ELF_IN_IMAGE}")));
        assert!(GRUB_CFG.contains("serial --unit=0 --speed=115200"));
        assert!(GRUB_CFG.contains("terminal_output serial"));
        assert!(GRUB_CFG.contains("set timeout=0"));
    }

    #[test]
    fn missing_elf_is_a_clear_error() {
        let e =
            make_disk_image(Path::new("/nonexistent.elf"), Path::new("/tmp/x.img")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent.elf"), "{e}");
    }
}
