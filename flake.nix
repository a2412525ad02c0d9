{
  description = "foundation: four Python services behind one gateway, built with Pants";

  # `nix develop` gives the whole toolchain; nothing here builds the services (Pants does).
  # nixos-24.11 still carries Python 3.9, which Pants 2.17 itself runs on.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f (import nixpkgs {
        inherit system;
        # Terraform is BSL-licensed, "unfree" to nixpkgs; allow that one package only.
        config.allowUnfreePredicate = pkg: builtins.elem (nixpkgs.lib.getName pkg) [ "terraform" ];
      }));
    in
    {
      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          # python311 first: `python3` is the 3.11 the services run on; `python3.9` runs Pants.
          packages = with pkgs; [
            python311
            python39
            postgresql_15
            redis
            terraform
            kubectl
            kustomize
            kubernetes-helm
            awscli2
            checkov
            hadolint
            shellcheck
            jq
            git
          ];

          shellHook = ''
            # No update check ("checkpoint") calls from Terraform.
            export CHECKPOINT_DISABLE=1
            if [ -z "''${FOUNDATION_SHELL_QUIET:-}" ]; then
              echo "foundation dev shell"
              echo "  $(python3 --version) (services), $(python3.9 --version) (Pants)"
              echo "  $(postgres --version), $(redis-server --version | cut -d' ' -f1-3)"
              echo "  $(terraform version | head -n 1), kubectl $(kubectl version --client -o json 2>/dev/null | jq -r .clientVersion.gitVersion)"
              echo "  ./pants test ::          tests"
              echo "  bash .ci/infra-checks    infrastructure checks (terraform, kustomize, checkov, ...)"
            fi
          '';
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixpkgs-fmt);
    };
}
