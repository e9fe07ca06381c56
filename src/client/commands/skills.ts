/**
 * Shared skills: lightweight Codex skills kept in this repository's `skills/shared/`, which any
 * superproject can pull into its `.agents/skills/` folder (where Codex looks for repo skills).
 * A skill is a folder with a SKILL.md whose YAML front matter names and describes it.
 */
import { cp, readdir, readFile, stat } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { CwsError } from "../../errors.ts";
import type { StateStore } from "../state.ts";

export const SHARED_SKILLS_DIR = join(import.meta.dirname, "..", "..", "..", "skills", "shared");

/** The front matter Codex requires: a one-line name of at most 64 characters and a description. */
const SkillFrontMatter = z.object({
  name: z.string().min(1).max(64).regex(/^[^\n]+$/),
  description: z.string().min(1).max(1024),
  metadata: z.record(z.string(), z.unknown()).optional(),
});

export interface SkillInfo {
  name: string;
  description: string;
  folder: string;
  problem?: string;
}

/** Reads the YAML front matter between the first two `---` lines of a SKILL.md. */
export function parseSkillFile(text: string): z.infer<typeof SkillFrontMatter> {
  const match = /^---\r?\n([\s\S]*?)\r?\n---\r?\n/.exec(text);
  if (match === null) throw new CwsError("INVALID_ARGUMENT", "SKILL.md does not start with YAML front matter between --- lines");
  const parsed = SkillFrontMatter.safeParse(parseYaml(match[1]));
  if (!parsed.success) throw new CwsError("INVALID_ARGUMENT", `SKILL.md front matter: ${parsed.error.issues[0]?.path.join(".")}: ${parsed.error.issues[0]?.message}`);
  return parsed.data;
}

export async function listSkills(dir = SHARED_SKILLS_DIR): Promise<SkillInfo[]> {
  const skills: SkillInfo[] = [];
  for (const folder of (await readdir(dir)).sort()) {
    const path = join(dir, folder, "SKILL.md");
    if (!existsSync(path)) continue;
    try {
      const meta = parseSkillFile(await readFile(path, "utf8"));
      skills.push({ name: meta.name, description: meta.description, folder });
    } catch (error) {
      skills.push({ name: folder, description: "", folder, problem: (error as Error).message });
    }
  }
  return skills;
}

/** Copies shared skills into a superproject's `.agents/skills/`; an existing skill folder is never overwritten. */
export async function pullSkills(state: StateStore, slug: string, names: string[], options: { dir?: string } = {}): Promise<{ pulled: string[]; skipped: Array<{ name: string; reason: string }> }> {
  const root = state.binding(slug).root;
  const available = await listSkills(options.dir);
  const wanted = names.length === 0 ? available.map((s) => s.name) : names;
  const pulled: string[] = [];
  const skipped: Array<{ name: string; reason: string }> = [];
  for (const name of wanted) {
    const skill = available.find((s) => s.name === name || s.folder === name);
    if (skill === undefined) throw new CwsError("NOT_FOUND", `There is no shared skill named ${name}. \`cws skills list\` shows them.`);
    if (skill.problem) {
      skipped.push({ name, reason: skill.problem });
      continue;
    }
    const target = join(root, ".agents", "skills", skill.folder);
    if (existsSync(target) && (await stat(target)).isDirectory()) {
      skipped.push({ name, reason: `already present at ${target}` });
      continue;
    }
    await cp(join(options.dir ?? SHARED_SKILLS_DIR, skill.folder), target, { recursive: true, force: false, errorOnExist: true });
    pulled.push(skill.name);
  }
  return { pulled, skipped };
}
