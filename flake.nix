{
  description = "foundation: four Python services behind one gateway, built with Pants";

  # `nix develop` gives the whole toolchain; nothing here builds the services (Pants does).
  # nixos-24.11 still carries Python 3.9, which the ./pants launcher needs (Pants 2.17 runs on it).
  # Versions match production and docker-compose.yml: PostgreSQL 16 (RDS engine_version "16"),
  # Redis 7.0 (ElastiCache engine_version "7.0", redis:7.0.15 in compose).
  #
  # flake.lock pins the nixpkgs commit; it is written by `nix flake lock` on a machine that can
  # reach GitHub (docs/development.md) and committed with the change that needs it.
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
      devShells = forAllSystems (pkgs:
        let
          # nixpkgs has Redis 7.2; production's minor is 7.0: the same derivation on the 7.0.15
          # release tarball (sha256 as published with the release).
          redis_7_0 = pkgs.redis.overrideAttrs (old: rec {
            version = "7.0.15";
            src = pkgs.fetchurl {
              url = "https://download.redis.io/releases/redis-${version}.tar.gz";
              hash = "sha256-mAZvU2NQSybDTdIPvMPJV5kNdkzfQldsg2/AIQc/Q0E=";
            };
            # nixpkgs' patches are for 7.2; 7.0's own test suite is not this shell's business.
            patches = [ ];
            doCheck = false;
          });
        in
        {
        default = pkgs.mkShell {
          # python311 first: `python3` is the 3.11 the services run on; `python3.9` runs Pants.
          packages = with pkgs; [
            python311
            python39
            postgresql_16
            redis_7_0
            terraform
            kubectl
            kustomize
            kubernetes-helm
            awscli2
            checkov
            hadolint
            shellcheck
            jq
            yq-go
            git
          ];

          shellHook = ''
            # No update check ("checkpoint") calls from Terraform.
            export CHECKPOINT_DISABLE=1
            if [ -z "''${FOUNDATION_SHELL_QUIET:-}" ]; then
              echo "foundation dev shell"
              echo "  $(python3 --version) (services), $(python3.9 --version) (Pants)"
              echo "  $(postgres --version), $(redis-server --version | cut -d' ' -f1-3), $(yq --version)"
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
